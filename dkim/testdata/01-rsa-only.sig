DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=rsa.example; s=s1;
	t=1748779200; h=from:from:subject:subject:date:date:message-id:
	message-id:to:to:mime-version:mime-version:content-type:
	content-type; bh=4o1bfHodR00vzKm4FDC71U8fp1T0eCDea4dUVmVpCTs=; b=
	J/yYuCPVawDGjhJvLEA8yMoIj3Fh5xMuUmcEyNEMsc9UNrl0xCu3/Dpm6LayGjxFgN2u
	bG41luIg1FxmQYkPDKjFAVfVwgkTHdaB9Ya7Tjmj/wA0kuIdbS45hWexXOJJJiRcrzES
	AKvB6D62DPe6GJ0FhRYjFR6FJ/G1Y3oim20=
