DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
	s=r2025; t=1748779200; h=from:from:subject:subject;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dzlIIR92zKrEy+sjD
	av7OjwRCdlLxhwDd+tDeKYCypRcDi+yDjLc8XM9MQ79ozN9UlGyRRDk0DcUOeW6yiTJ7
	pA+aTGIFnPuoiWHaJk+jMj5lSJXbvna3R2LZmRRVcszz0Hz/yOQYI1EnjCzk2SsAgs3i
	zED0V+S3hWA+RXakgXkwykB3Tj1MwdZNhoaPl2NIHEfxwRiFMk4Po0Sq7f/OMKkDcrHJ
	XfVbaG9ygvjYczJZ3qkNzdfciZnoBx6oZEXQXcWN9VYJJKVusSGVYy+NsnEjSTMTPMhb
	PPtPxmoTotsP5AwC+fFAeyk5nMXKoRO29UkMQaeynABvxbD+ByQcA==
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;
	s=e2025; t=1748779200; h=from:from:subject:subject;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=BCN4kjVyUuS25zaay
	OD2xdIRIDvQEHEqzIxLbDBnRxIcHiJ5t7VoB+yOXOfR+A1JpsmH23o5pKqLWRMKC41tA
	Q==
