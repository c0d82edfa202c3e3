DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; x=1751371200; h=from:from:subject:subject:
	date:date:message-id:message-id:to:to;
	bh=JDauwJuMCMDTRS7gnBPVCc1L3nZ1N+mp2oqIGUj42zw=; b=IJ/LRlZYoTggc8f/e
	hZW1JsVrU9WN++jxLami1tUydwYT0qt4l+rdYkmuFObIgwZlHFGKy2qIJq0JA5WavuEI
	H2zf4V4kt5xOPLf+7ZXcsDjOq5ME1OiE70yW0YgrJdk/QbMwkfVgJEJkM7OB7m2W/CTT
	3mwS2egFhfVH6p6/UpBwBr91w3pE6HM+UzqIzOqmVI9VpNVYySSfqMtFZNuMn6qlT4G4
	5XwmvXCkzFcxtnN9Iw+Mg83CmcXt7d26fsBf63YN6Gnxrpaqs2Qwil6YGRHr8QbLuqjg
	NLx8JW9hS82d7MflwITfhjiOMNLbJv0F/MKBtu8GVMrY6UfeCipFg==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; x=1751371200; h=from:from:subject:subject:
	date:date:message-id:message-id:to:to;
	bh=JDauwJuMCMDTRS7gnBPVCc1L3nZ1N+mp2oqIGUj42zw=; b=FLOfUdnWsphphBY1H
	LF/lv9dt7cbgQCisvPX0g7/CDMy+J6P2fwTBJ0W/zs6DqzYoApCEVqEu9QqKyCjp8eMA
	A==
