package pinpoint

import (
	"fmt"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/servicetype"
)

// typesKey holds the merged serviceType table in the input's cache namespace.
var typesKey = []byte("servicetype-table")

// loadTypes builds the serviceType table from the built-ins and the configured
// type-provider files, adds the custom entries persisted by earlier runs (so a type
// loaded once stays known even if its file is gone), and persists the result.
func (in *Input) loadTypes(store cache.Store) (*servicetype.Table, error) {
	table, err := servicetype.Load(in.cfg.TypeProviders)
	if err != nil {
		return nil, fmt.Errorf("pinpoint: type_providers: %w", err)
	}
	if saved, err := store.Get(typesKey); err == nil && saved != nil {
		merged, err := servicetype.WithPersisted(table, saved)
		if err != nil {
			in.log.Warn("pinpoint: ignoring the persisted serviceType table", "error", err)
		} else {
			table = merged
		}
	}
	data, err := table.MarshalBinary()
	if err == nil {
		err = store.Set(typesKey, data, 0)
	}
	if err != nil {
		in.log.Warn("pinpoint: serviceType table not persisted", "error", err)
	}
	if n := len(table.Custom()); n > 0 {
		in.log.Info("pinpoint: custom service types loaded", "count", n)
	}
	return table, nil
}

// Types is the input's serviceType and annotation-key table.
func (in *Input) Types() *servicetype.Table { return in.types }
