DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:mime-version:mime-version:content-type:
	content-type:content-transfer-encoding:content-transfer-encoding;
	bh=F5x63tB+k1k6HTZuzCkQWtIsv/4FNmwoDXFTFC2bJ1o=; b=etbIZJ2DPhVipeiXQ
	WGb/yIk65qd92SO2a8Sgwu839jHtqcg2z7MRqRb68aUopmoNhu4JWcGmTCWxOsNXJQjf
	g+aplWQ2qam/6hCmdwzXJot43uS4MAIBhZzxoI3uWqgEH9aPSV7cIpb9KJcZdHfz2tVz
	r8Ltm7X2y7vb5+GUse4cgShBNqjsEQAJ+EALHrRF7MRF17Vvj5ECnnL/7c92/gQ67Hd9
	ve8L+bJPBpGe5L7VrN75H1mv59Xd20tU6wRDB8HPlxioZnOogGCCinfsWhoCG9PA9yOX
	K290v0Xr95BHIMnxIY/pEp11P3rgXMyMP5CHqZW9B5Al+5bqB299g==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:mime-version:mime-version:content-type:
	content-type:content-transfer-encoding:content-transfer-encoding;
	bh=F5x63tB+k1k6HTZuzCkQWtIsv/4FNmwoDXFTFC2bJ1o=; b=pROpdOp2X96nzvpAF
	C2rJJu0W6EmLvAceEnDA+KDyzaMxraUR8JatIDWJHoWVN/le94yupBzPdpA1LjPHTn7D
	g==
