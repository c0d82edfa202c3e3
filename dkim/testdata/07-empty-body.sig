DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=jjeoIHv9x8CmxSvVy
	InaBi3vU35+3u38nt2kUGhCdDflx+fkNfXzEe0PDlRjKpAYbwV0wTxj3D1Kw0Gvgg3ng
	QjE0ToUaqux6otts42KAORW8o9Dq4BItIVKfnGkUnPbYZF7nZEJWneq7Pfbt6HZCCw0O
	nAvCGuvvG476h8BbjeKs9jLBoc7jZXDlrc4RPhUGOTtxEPYOw4OZyMUD1PHc05OXjg2+
	TT+bYocitBt07PxGe3Af08d+Fm47EcxdY/sGa1BrLuDv6AVgoUy+uUCE2wibodk7ygyO
	blrrj/YBx7jS5XqRpj/NU4Y3MnMg+XTXcneePDmNspj6FXU+RDbiw==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=YDSpIoarfmwaCJ2Av
	knWaCHYRLIVIuBeb9+fWPk31PXF0mSg8t7sdxAK+I1SXdDQJp3u6zq4po4wrkDqzMebB
	A==
