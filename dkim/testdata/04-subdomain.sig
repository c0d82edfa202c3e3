DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=7TVBAAqPt1QcjVo/JjoGseuhFTF+X+hgTEA/t3WK6Ps=; b=YhY5IeX+iSKbbJSY1
	nLTj9H8mBy0rlA2rAgDK31kw5D9+easrspNilzVazlaQ97dOr84/0zp53SHNQZDS/wPh
	QfQuXpO1tWY1wwL9foGLu2fRrokLTzYHRvhY6yZKQL25zlj32Jmv+4tI6npEAfDvL0pT
	pYd32wQGUV5O2k4fYgN5i6m8s1KSXq06o1p+UUiymgJqE0yjWR843oEYgSDfKOTR4kUm
	8kjJAhPniN1lU7ogDy6RFEqdTN8IMFsN9VRhYWyTyW41wTb9tK/FYYgmJ9LcuSflo10t
	8M1KUYzD03jYGrtK/DVwCvfbf8A0209sHq7JHRbDdScGGr8KrMN1w==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to;
	bh=7TVBAAqPt1QcjVo/JjoGseuhFTF+X+hgTEA/t3WK6Ps=; b=hg4irbF9chhCh31FU
	1qIdcJUsHf9HV3AAMCg2cnc7vj9kRwkbGKXS4vZFhleev5uqwSiyYjKaTJbSXmSMx0WA
	w==
