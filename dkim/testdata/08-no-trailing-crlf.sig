DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=J1Wfo7A92eJ/6BsiOsu4nRcybZHXyLil9CIiaorlqeU=; b=VTu/9JM8lseME/hj5
	X9cHqu22igSZR7F7laaykg3fKZy9zTiTJtho9hAXqN90nFxHx3TrVaRGOLwcq8tf2w37
	ronm+7OY33GPsEHV2YnVKfjLmIzzvo59WmtTrfMc44XmwA6GdCOH3lvqDh9RCWuUNBVa
	CjzZLTPHeeEansKr8dggZ0VFvYLU6VOMVZAbh+5o+D8VnYdiAZHYirQ46+SISIUSR4FD
	Pg2IrTMccWpTAfO68TRz8n2K6D58qhhv6BWeTPYxmURPO2Gk0el2mOjSgc00ByLdCdJ2
	vJDIny1rW7iE+sWQaGE8tPOwrHY9U+bhFPgGV/05cKU9j+b2t4ocA==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=J1Wfo7A92eJ/6BsiOsu4nRcybZHXyLil9CIiaorlqeU=; b=BE5dx9XPMtleRlM9i
	FvCbn3BOdSaG71kegDQaSawU/xDkKVpKM0xvYavpZMQp//lqmOnrTNoH9CHKrUuIAeEA
	A==
