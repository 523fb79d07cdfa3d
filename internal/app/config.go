// Package app wires opsflow's parts — store, Temporal client, API, workers —
// for the opsflow binary and the dev stack.
package app

import (
	"log/slog"
	"os"
	"strings"
	"time"
)

// Config is opsflow's runtime configuration, from OPSFLOW_* variables.
// Temporal's connection (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API
// key) comes from the SDK's envconfig.
type Config struct {
	HTTPAddr      string // OPSFLOW_HTTP_ADDR
	DatabaseURL   string // OPSFLOW_DATABASE_URL: postgres://… or a SQLite file
	DataDir       string // OPSFLOW_DATA_DIR
	TemporalUIURL string // OPSFLOW_TEMPORAL_UI_URL, for run links
	LogLevel      string // OPSFLOW_LOG_LEVEL: debug, info, warn, error
	LogFormat     string // OPSFLOW_LOG_FORMAT: text or json
	SecureCookies bool   // OPSFLOW_SECURE_COOKIES: set behind HTTPS
	MetricsAddr   string // OPSFLOW_METRICS_ADDR: the worker's /metrics listener
	// EventRetention is how long the CMDB change feed is kept
	// (OPSFLOW_CMDB_EVENTS_RETENTION, a Go duration; at least 7 days).
	EventRetention time.Duration
	// BaseURL is opsflow's external URL, for links in chat messages
	// (OPSFLOW_BASE_URL; default http://OPSFLOW_HTTP_ADDR).
	BaseURL string
	// TrustedProxies are the proxies (CIDRs or IPs) whose X-Forwarded-For,
	// X-Real-IP and X-Request-Id headers are believed
	// (OPSFLOW_TRUSTED_PROXIES, comma-separated); none by default.
	TrustedProxies []string
	// LocalTransport lets this process's workers run jobs with the local
	// transport, as the worker's own user (OPSFLOW_LOCAL_TRANSPORT=1). Off
	// by default: enable it only on a dedicated worker, never on the API's
	// host, since such a script can read everything opsflow can.
	LocalTransport bool
	// HTTPStepAllowNets are networks (CIDRs, comma-separated) runbooks'
	// http steps on this process's workers may reach beyond the default,
	// which leaves out the worker's own loopback and link-local addresses
	// such as the cloud metadata service (OPSFLOW_HTTP_STEP_ALLOW_NETS).
	HTTPStepAllowNets string
	// GitCAFile is a PEM file of CAs this process's workers trust for
	// https:// Git sources beyond the system's (OPSFLOW_GIT_CA_FILE).
	GitCAFile string
	Chat      ChatConfig
}

// ChatConfig holds the approval channels' settings; an empty one is off.
type ChatConfig struct {
	SlackBotToken      string // OPSFLOW_SLACK_BOT_TOKEN (xoxb-…): posts tickets
	SlackSigningSecret string // OPSFLOW_SLACK_SIGNING_SECRET: checks interactions
	SlackChannel       string // OPSFLOW_SLACK_CHANNEL: where tickets go
	SlackAPIURL        string // OPSFLOW_SLACK_API_URL: another API endpoint (tests)
	SlackAppToken      string // OPSFLOW_SLACK_APP_TOKEN (xapp-…): Socket Mode, no public URL needed
	DingTalkWebhook    string // OPSFLOW_DINGTALK_WEBHOOK: custom robot URL with access_token
	DingTalkSecret     string // OPSFLOW_DINGTALK_SECRET: the robot's signing secret
	DingTalkAppSecret  string // OPSFLOW_DINGTALK_APP_SECRET: enterprise robot callbacks
	WeComWebhook       string // OPSFLOW_WECOM_WEBHOOK: group robot URL with key
	FeishuWebhook      string // OPSFLOW_FEISHU_WEBHOOK: custom bot URL
	FeishuSecret       string // OPSFLOW_FEISHU_SECRET: its signing secret
	SMTPAddr           string // OPSFLOW_SMTP_ADDR: host:port for email notices
	SMTPFrom           string // OPSFLOW_SMTP_FROM
	SMTPUsername       string // OPSFLOW_SMTP_USERNAME (optional, PLAIN auth)
	SMTPPassword       string // OPSFLOW_SMTP_PASSWORD
}

// ConfigFromEnv reads Config with defaults.
func ConfigFromEnv() Config {
	return Config{
		HTTPAddr:          env("OPSFLOW_HTTP_ADDR", "127.0.0.1:8080"),
		DatabaseURL:       os.Getenv("OPSFLOW_DATABASE_URL"),
		DataDir:           env("OPSFLOW_DATA_DIR", "./.opsflow"),
		TemporalUIURL:     strings.TrimRight(os.Getenv("OPSFLOW_TEMPORAL_UI_URL"), "/"),
		LogLevel:          env("OPSFLOW_LOG_LEVEL", "info"),
		LogFormat:         env("OPSFLOW_LOG_FORMAT", "text"),
		SecureCookies:     os.Getenv("OPSFLOW_SECURE_COOKIES") == "true",
		MetricsAddr:       os.Getenv("OPSFLOW_METRICS_ADDR"),
		EventRetention:    durationEnv("OPSFLOW_CMDB_EVENTS_RETENTION", 7*24*time.Hour),
		BaseURL:           strings.TrimRight(env("OPSFLOW_BASE_URL", "http://"+env("OPSFLOW_HTTP_ADDR", "127.0.0.1:8080")), "/"),
		TrustedProxies:    listEnv("OPSFLOW_TRUSTED_PROXIES"),
		LocalTransport:    os.Getenv("OPSFLOW_LOCAL_TRANSPORT") == "1" || os.Getenv("OPSFLOW_LOCAL_TRANSPORT") == "true",
		HTTPStepAllowNets: os.Getenv("OPSFLOW_HTTP_STEP_ALLOW_NETS"),
		GitCAFile:         os.Getenv("OPSFLOW_GIT_CA_FILE"),
		Chat: ChatConfig{
			SlackBotToken:      os.Getenv("OPSFLOW_SLACK_BOT_TOKEN"),
			SlackSigningSecret: os.Getenv("OPSFLOW_SLACK_SIGNING_SECRET"),
			SlackChannel:       os.Getenv("OPSFLOW_SLACK_CHANNEL"),
			SlackAPIURL:        os.Getenv("OPSFLOW_SLACK_API_URL"),
			SlackAppToken:      os.Getenv("OPSFLOW_SLACK_APP_TOKEN"),
			DingTalkWebhook:    os.Getenv("OPSFLOW_DINGTALK_WEBHOOK"),
			DingTalkSecret:     os.Getenv("OPSFLOW_DINGTALK_SECRET"),
			DingTalkAppSecret:  os.Getenv("OPSFLOW_DINGTALK_APP_SECRET"),
			WeComWebhook:       os.Getenv("OPSFLOW_WECOM_WEBHOOK"),
			FeishuWebhook:      os.Getenv("OPSFLOW_FEISHU_WEBHOOK"),
			FeishuSecret:       os.Getenv("OPSFLOW_FEISHU_SECRET"),
			SMTPAddr:           os.Getenv("OPSFLOW_SMTP_ADDR"),
			SMTPFrom:           env("OPSFLOW_SMTP_FROM", "opsflow@localhost"),
			SMTPUsername:       os.Getenv("OPSFLOW_SMTP_USERNAME"),
			SMTPPassword:       os.Getenv("OPSFLOW_SMTP_PASSWORD"),
		},
	}
}

func durationEnv(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// listEnv splits a comma-separated variable, dropping empty entries.
func listEnv(name string) []string {
	var out []string
	for _, s := range strings.Split(os.Getenv(name), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// NewLogger builds the process logger from the config.
func NewLogger(cfg Config) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
