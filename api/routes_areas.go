package api

// Route groups of the web console's areas, each filled in beside its
// handlers. An empty group is an area not built yet.

func (a *API) consoleRoutes() []route { return nil } // home, API reference
