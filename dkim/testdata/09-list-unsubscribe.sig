DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:mime-version:mime-version:content-type:
	content-type:list-id:list-id:list-unsubscribe:list-unsubscribe:
	list-unsubscribe-post:list-unsubscribe-post:feedback-id:feedback-id:
	precedence:precedence;
	bh=WPV0YNhMcd7RQoB6pF7uNHMTCw1j6vbtcW8P9AIjb9w=; b=csXIS8PtzQqRiY5S+
	a6MeWRnS/QYMBvttvFA8gh+XxE6s0koufjNQRPIHu55k19xKHd5LWXd6DaWTarwkaJTt
	rD4ikvqEcpoYwYk0+/le4MWFTaAe95HA2FG8OOXXVThtyWyZg+BrtyWOJg1tAfBNKnZm
	KCmwdwlnJUVouYJSYmQ306P7GIBmUEfRj/YRHK/y+cWVBimS8Xw4DJhTNdve2SQYj+33
	D8kaq7hcJ7XQ4PVSgD6FnyjWRmFkhQ2GMwwvfi0sTOPlDoT/fj5McygL42dPMt0pC/It
	1bYT9V/olEP/npvwvB5h5i4GLwLqXRT2mpcBBoQc0YVUX/IsFnHZQ==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:mime-version:mime-version:content-type:
	content-type:list-id:list-id:list-unsubscribe:list-unsubscribe:
	list-unsubscribe-post:list-unsubscribe-post:feedback-id:feedback-id:
	precedence:precedence;
	bh=WPV0YNhMcd7RQoB6pF7uNHMTCw1j6vbtcW8P9AIjb9w=; b=RCp8xx5LknFiZZmOt
	MGHuTzxvVosTy+WRDN+G/lRX1fiooXz0PRxfPOFZSSUfzslVCTtSjS/Jz+2IYMGVHhMD
	Q==
