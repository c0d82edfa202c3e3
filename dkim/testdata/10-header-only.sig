DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:to:to;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=IUjEpuNHkZwAC5+Hi
	dqOiKG07sbV0VQOjRsy4DiQnRCcYMQDONwNRj3B2c34aL2w2rY3qJU+akRdZmXFa0l5J
	5G16lMZPQ8IXBzeE3kkwpMPqmGJND+Hx4tMVlgtmKPBJ0ktOazNymFLm3dUtjjr4H05r
	+P/sQ/LYk+x2Ga7Adh7ioQgDLxyOefF0VroOHR51KVjVryv0Jh8bVw8DY7XSoQHGUwnm
	xqKU/viZYI86kvAgkAZd4nsftb5+9gsu/gcSslRCSJvc2zi0DME1Bt53a0zo2P9QoyZl
	zMNzXyIJvzRGCgaTDasAfaGSRNV8GGR4dNhp19gNqQxit5EoJZrWg==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:to:to;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=HLQ5dftUug40r3NWI
	chJzJUIgJeAow8y9dvZmo5csoT0iN3ifMBhVCDxoAnNK6olkbYzKlJ0KKfu8SyrfC5nD
	Q==
