package queue

import (
	"context"
	"strings"
)

func lower(s string) string { return strings.ToLower(s) }

func contextBackground() context.Context { return context.Background() }
