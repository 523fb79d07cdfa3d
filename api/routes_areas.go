package api

// Route groups of the web console's areas, each filled in beside its
// handlers. An empty group is an area not built yet.

func (a *API) accountRoutes() []route  { return nil } // one's own account: password, API tokens
func (a *API) adminRoutes() []route    { return nil } // users, credentials, groups, policies, risk rules, chat identities
func (a *API) jobPageRoutes() []route  { return nil } // job preview, host table and CSV, schedules
func (a *API) listRoutes() []route     { return nil } // paged lists: jobs, runs, CIs, tickets, audit
func (a *API) cmdbPageRoutes() []route { return nil } // CI, label, type and relation editing
