DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:mime-version:mime-version:content-type:
	content-type:content-transfer-encoding:content-transfer-encoding;
	bh=J5xckkxn/K6KCrpS0qV+UOa8Gv/ad173gmWWxWaIrys=; b=joml37bvBZXcVFPNl
	sEtQi+gbj0IjlX46eyD9weQqoku7UUTsxuoMoRXk3K7i/jDp7QuqoF8RgFiYmj0vf5yR
	RhQ2MqF6+Oxkt/nXN/kSMWQMLG64KyFBLxf4bqBTRG/5KMKx2rL4UN33TeIwS+Xevyc5
	8Zp+iMun+hiZmriJO94HSr0NmWL8nj6weyBqZm3M5QEfjjIJif7whT68xIQuhZ90DCFQ
	JGnkrGWN4MLACESd2+k6stzaALzNAOmOQizseXo6gJ5Y5qd+VEd+xWEAILB6XuD/jNl0
	h8LN+HtB9D9QoQvr04bCQ/TRfo26fsaMdZJu9vmBsVDAiWX9XrDLA==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:mime-version:mime-version:content-type:
	content-type:content-transfer-encoding:content-transfer-encoding;
	bh=J5xckkxn/K6KCrpS0qV+UOa8Gv/ad173gmWWxWaIrys=; b=VBxbZ4vLKjweC2fLa
	3FPH1UTGGeW0b4lZzoHXmNbRHix2NW1+V1KgX+j87mHmQFqoF/YJcyOfkB5/FfA7lmvB
	Q==
