DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:feedback-id:feedback-id;
	bh=CEnrWya9NxsBibQdhMWtR5bCUVQxTmD6dJVQjEdYruQ=; b=SUm2kDyvmdgb44AfC
	orEw6iTOS+G8GLB70Y1X6Ev3C9xjlSMt6mJdai+7zsPgmPLTbJqJ7TA1B91OzFETcGgV
	av2H7LXbRXxY5oW02Cof6odbIFV1ihH+f/cqddLu+M5C1iX9EX92TT8gi2Gwq6tLUQhO
	OAJLmHPQcRQnidVsTad4g40xp1yH1bwH8mYFcrDWwpNhMIfMmqcH4lyt2Hh6RUrARFnb
	t3Q51l9sZKgKvxwdBkE1wQFe0lfaWoMdoM2pWwY84jJ23Ucs+n1s7ysmQev2Z3wvkHnH
	AFQdyCD/VIaifT20WxcRe3Mo+Fybs98us2Wh43M9UE9GQRfrcbY7w==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:feedback-id:feedback-id;
	bh=CEnrWya9NxsBibQdhMWtR5bCUVQxTmD6dJVQjEdYruQ=; b=v0/KPcNevWKt9mJPC
	CSQg01q3fFkk/7XHKmcoJy40il30Fz+HFfxdZ0nvdaPHBUhvfjAbx3mkCLKazZ+ftU6D
	A==
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=mta.example.net;
	s=op; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:feedback-id:feedback-id;
	bh=CEnrWya9NxsBibQdhMWtR5bCUVQxTmD6dJVQjEdYruQ=; b=IxOGOAxBKqvSUsiBu
	YmWEC9cYnMwk37cNkklzq/1Q9r5K83I32xKq7fln4jUk5SjraIY//PzKmUi+iZdXjv9W
	g9nYoIakdJjZpQSfenaskiTBP1WrJnYKBAIRLI9TeGwSg72egZmQB9c/+iZaQPH1cJPs
	jXYgUXiE1/KfdlwTaFe6YAcymyyCYhCB6qP/cvc70NY62evD+Y+KTScH7xweGsqA6R8W
	BW9cS+20FzZ5rMLyfdPRxxf+LPiaS+sPJsPHFjH2RYRKD1VFk8Q7fp9JOYtqI6TnLfs0
	FHbczE5pTNvygsETP9MPbJ8nHjuVKqYBm3C0DjsnwGG294vYPlcXA==
