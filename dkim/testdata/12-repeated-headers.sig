DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:to:cc:cc;
	bh=yb2PvqH7kTv4PVQSp3jWifqChP1trapSnRdcP+Bta6A=; b=AJcV978kzdCMK8zka
	E36Xd6XEc6044b9W8tWPFfi5qod1j2Dg7le9Ayw+rE7U4CQTS00DXZS6McydVldQ1VxO
	favhY8xpC2kf35jsfOOQ7U7V2RTjcKGE40gPbQm3S80NB6evOXpA5DQfOXnXhMkS1UFo
	j7ZTO0s0vklplPiBMZwJ6LgWvqYqcjh6vGSIQe39VrdMel0dA5Vey7mxmiWDoNZrmgKD
	Mu9va1SrvuWrVqNXtg6ilC+fkS7cTJvM4+XY6+wjP4zPT7gzyVRcXqbPQ0hOSGETwc/P
	FIWR6DdaaWzG5NGKQOaErfounFe9Y2vXG1dg4SOcOxxsZ7EZ3Wsyw==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject:date:date:
	message-id:message-id:to:to:to:cc:cc;
	bh=yb2PvqH7kTv4PVQSp3jWifqChP1trapSnRdcP+Bta6A=; b=NvGO4Szb5QVBeyeHN
	FWxBiS0bgft0zG1PP+csUqAAyWittWPGKwrzIh6mT5jzmcRYfW3C57bOm/4ShITtlp/A
	w==
