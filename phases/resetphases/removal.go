package resetphases

import (
	"context"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// removal is a reset phase that removes something a component installed: it
// runs only when present says the host has it, and remove reports whether
// anything went and what.
type removal struct {
	name, short, long string
	present           func(context.Context, host.Host) (bool, error)
	remove            func(context.Context, host.Host, func(string, ...any)) (changed bool, detail string, err error)
}

func (r removal) phase() workflow.Phase {
	return workflow.Phase{
		Name:  r.name,
		Short: r.short,
		Long:  r.long,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := rundata.From(d, r.name)
			if err != nil {
				return false, err
			}
			return r.present(data.Context(), data.Host())
		},
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, r.name)
			if err != nil {
				return err
			}
			changed, detail, err := r.remove(data.Context(), data.Host(), data.Logger().Printf)
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), changed, detail)
		},
	}
}
