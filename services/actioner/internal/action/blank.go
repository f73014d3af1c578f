package action

import "context"

// blank is the Blank actioner: it does nothing and always succeeds, whatever
// its params. It lets an operator run checks with no effect on the load
// balancer (and is what an unconfigured tier gets).
type blank struct{}

func newBlank(map[string]string, Deps) (Actioner, error) { return blank{}, nil }

func (blank) Apply(context.Context, Request) error { return nil }
