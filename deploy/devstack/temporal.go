package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

const clusterName = "active"

// temporalOptions configures the embedded Temporal server. An empty DBFile
// keeps everything in memory.
type temporalOptions struct {
	IP               string
	Port             int
	UIPort           int // 0: no Web UI
	UICodecEndpoint  string
	Namespace        string
	DBFile           string
	SearchAttributes map[string]enumspb.IndexedValueType
	Logger           *slog.Logger
	ReservedPorts    []int // ports others will listen on
}

type temporalServer struct {
	server temporal.Server
	ui     *uiserver.Server
}

func startTemporal(o temporalOptions) (*temporalServer, error) {
	if err := checkPortFree(o.IP, o.Port); err != nil {
		return nil, fmt.Errorf("temporal frontend port: %w", err)
	}
	var ui *uiserver.Server
	if o.UIPort != 0 {
		// The UI server exits the process when its port is taken; check first.
		if err := checkPortFree(o.IP, o.UIPort); err != nil {
			return nil, fmt.Errorf("temporal ui port: %w", err)
		}
		ui = uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
			Host:                o.IP,
			Port:                o.UIPort,
			TemporalGRPCAddress: net.JoinHostPort(o.IP, strconv.Itoa(o.Port)),
			EnableUI:            true,
			Codec:               uiCodec(o.UICodecEndpoint),
			CORS:                uiconfig.CORS{CookieInsecure: true},
			HideLogs:            true,
		}))
	}

	sqlConf := config.SQL{PluginName: sqliteplugin.PluginName}
	if o.DBFile == "" {
		sqlConf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		sqlConf.DatabaseName = "opsflow-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	} else {
		// WAL with synchronous=normal is ~6x the throughput of the default
		// pragmas; the plugin holds a single connection.
		sqlConf.ConnectAttributes = map[string]string{"mode": "rwc", "_pragma_journal_mode": "wal", "_pragma_synchronous": "normal"}
		sqlConf.DatabaseName = o.DBFile
		if _, err := os.Stat(o.DBFile); os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(o.DBFile), 0o700); err != nil {
				return nil, fmt.Errorf("temporal data dir: %w", err)
			}
			if err := sqliteschema.SetupSchema(&sqlConf); err != nil {
				return nil, fmt.Errorf("temporal sqlite schema: %w", err)
			}
		}
	}
	nsConf, err := sqliteschema.NewNamespaceConfig(clusterName, o.Namespace, false, o.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("temporal namespace config: %w", err)
	}
	if err := sqliteschema.CreateNamespaces(&sqlConf, nsConf); err != nil {
		return nil, fmt.Errorf("temporal create namespace: %w", err)
	}

	// Internal ports must not land on a port given to the frontend, the
	// Web UI or the opsflow API (the UI server exits the process when its
	// port is taken).
	taken := map[int]bool{o.Port: true, o.UIPort: true}
	for _, p := range o.ReservedPorts {
		taken[p] = true
	}
	pick := func() (int, error) {
		for {
			p, err := freePort(o.IP)
			if err != nil || !taken[p] {
				taken[p] = true
				return p, err
			}
		}
	}
	httpPort, err := pick()
	if err != nil {
		return nil, err
	}
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = o.IP
	conf.Persistence.DefaultStore = "sqlite-default"
	conf.Persistence.VisibilityStore = "sqlite-default"
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = map[string]config.DataStore{"sqlite-default": {SQL: &sqlConf}}
	frontend := net.JoinHostPort(o.IP, strconv.Itoa(o.Port))
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontend,
				HTTPAddress:            net.JoinHostPort(o.IP, strconv.Itoa(httpPort)),
				ClusterID:              "8a1c2f0e-6f1b-4f7e-9a7e-0b7c5d1e2f30",
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for _, svc := range []primitives.ServiceName{primitives.FrontendService, primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		var s config.Service
		s.RPC.BindOnIP = o.IP
		if svc == primitives.FrontendService {
			s.RPC.GRPCPort = o.Port
			s.RPC.HTTPPort = httpPort
		} else if s.RPC.GRPCPort, err = pick(); err != nil {
			return nil, err
		}
		conf.Services[string(svc)] = s
		hosts[svc] = static.SingleLocalHost(net.JoinHostPort(o.IP, strconv.Itoa(s.RPC.GRPCPort)))
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontend

	dyn := dynamicconfig.StaticClient{
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8096,
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// Schedules are used by later capabilities; updates by approvals.
		dynamicconfig.FrontendEnableUpdateWorkflowExecution.Key(): true,
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(&conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(slogLogger{log: o.Logger}),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return nil, fmt.Errorf("temporal new server: %w", err)
	}
	if ui != nil {
		go func() {
			if err := ui.Start(); err != nil {
				o.Logger.Error("temporal ui stopped", "error", err)
			}
		}()
	}
	if err := srv.Start(); err != nil {
		if ui != nil {
			ui.Stop()
		}
		return nil, fmt.Errorf("temporal start: %w", err)
	}
	return &temporalServer{server: srv, ui: ui}, nil
}

func (s *temporalServer) Stop() {
	if s.ui != nil {
		s.ui.Stop()
	}
	_ = s.server.Stop()
}

func checkPortFree(ip string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// slogLogger adapts slog to the server's logger; the server is chatty, so
// only warnings and above pass unless the level says otherwise.
type slogLogger struct {
	log   *slog.Logger
	level slog.Level
}

func (s slogLogger) Debug(msg string, tags ...tag.Tag)  { s.emit(slog.LevelDebug, msg, tags) }
func (s slogLogger) Info(msg string, tags ...tag.Tag)   { s.emit(slog.LevelInfo, msg, tags) }
func (s slogLogger) Warn(msg string, tags ...tag.Tag)   { s.emit(slog.LevelWarn, msg, tags) }
func (s slogLogger) Error(msg string, tags ...tag.Tag)  { s.emit(slog.LevelError, msg, tags) }
func (s slogLogger) DPanic(msg string, tags ...tag.Tag) { s.emit(slog.LevelError, msg, tags) }
func (s slogLogger) Panic(msg string, tags ...tag.Tag)  { s.emit(slog.LevelError, msg, tags) }
func (s slogLogger) Fatal(msg string, tags ...tag.Tag)  { s.emit(slog.LevelError, msg, tags) }

func (s slogLogger) emit(level slog.Level, msg string, tags []tag.Tag) {
	if level < slog.LevelWarn || !s.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, len(tags))
	for i, t := range tags {
		attrs[i] = slog.Any(t.Key(), t.Value())
	}
	s.log.LogAttrs(context.Background(), level, "temporal: "+msg, attrs...)
}

// uiCodec points the Temporal UI at opsflow's codec with the browser's
// opsflow session; without one the codec answers 401 and the UI says to
// log in to opsflow, with a link to its login page.
func uiCodec(endpoint string) uiconfig.Codec {
	if endpoint == "" {
		return uiconfig.Codec{}
	}
	return uiconfig.Codec{Endpoint: endpoint, IncludeCredentials: true,
		DefaultErrorMessage: "Log in to opsflow to see decoded workflow inputs and results (the codec needs an opsflow session).",
		DefaultErrorLink:    strings.TrimSuffix(endpoint, "/codec") + "/login"}
}
