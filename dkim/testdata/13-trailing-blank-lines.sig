DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=GfveqcUoNBU8N5bw59cXmF7VhLSxeAwcGWt7ZVj+rX4=; b=Nq0wgwdhdTMhuZTdm
	Z4UuxIFblSM8+IBCbbth29ZIWcJ87skTPnb/WQ0dRY3jVi/BEOrT5JljTUlqFOwc6cD3
	W09CK0gEATdjLzVB34Fa89/8PnudCM7udrzA4/4J3fm0a5MvXCOZ/lrwBjKlcSBWUiYs
	Cku7DMxkk5NzUpfSGi1G12ZrlECFXKg/e3rkvQLGTUjBxqex16qnlS1/+LlbZbc26imk
	o0xq6NbAi08d++e9rJNyG2lkIRWI0RwrOMJC/Kx7nY/cLuyfKJyU5YxyqzGk4VG24BZB
	nRDW1ej/rL+p42tL76IiL+UO6k1JLpQJpVq//FQHUlzZ1nOTSYt7Q==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=GfveqcUoNBU8N5bw59cXmF7VhLSxeAwcGWt7ZVj+rX4=; b=7VqipBHuBeqx65jeb
	L4znsSJRgl4P0G5OkUB8GyukqjVldla+J5RO6OmQjZvzfEtHs/vpEa77Iz613iUnEeFB
	A==
