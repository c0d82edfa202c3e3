DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=ed.example;
	s=s1; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=fpbp/RMognbfTUUBt0EJT7dh/btJporafkowjphTx/g=; b=Wum7+CfvuPTCFVosv
	TQrPtgrfpq4B69w0MdOml5QZF2uJ1XsWQ58dkAa6KoUll4RkZh95l+7zGaV7I+U4OztD
	Q==
