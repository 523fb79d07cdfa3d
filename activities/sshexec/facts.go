package sshexec

import (
	"bufio"
	"net"
	"strconv"
	"strings"
)

// Disk is a mounted filesystem. Usage is left out on purpose: it changes
// all the time, and the CMDB records configuration, not metrics.
type Disk struct {
	Mount  string `json:"mount"`
	Device string `json:"device"`
	SizeMB int64  `json:"size_mb"`
}

// ListeningPort is a socket accepting connections.
type ListeningPort struct {
	Proto string `json:"proto"`
	Addr  string `json:"addr"`
	Port  int    `json:"port"`
}

// HostFacts is what discovery learned about a host, read-only.
type HostFacts struct {
	Address     string
	Hostname    string
	OS          string
	OSVersion   string
	Kernel      string
	CPUCount    int
	MemoryMB    int64
	Disks       []Disk
	IPAddresses []string
	Ports       []ListeningPort
	Services    []string
	// HostKey is the key the host presented, in authorized_keys form.
	HostKey string
}

// DiscoveryScript is the read-only shell program that learns a host's
// facts: it prints sections ParseFacts reads. Every command has a
// fallback for hosts without the newer tool.
const DiscoveryScript = `export LC_ALL=C
echo '##hostname'; hostname
echo '##os'; cat /etc/os-release 2>/dev/null
echo '##kernel'; uname -r
echo '##cpu'; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
echo '##mem'; grep MemTotal /proc/meminfo
echo '##disks'; df -P -k -x tmpfs -x devtmpfs -x overlay -x squashfs 2>/dev/null
echo '##ip'; ip -o addr show 2>/dev/null || hostname -I
echo '##ports'; ss -Hltn 2>/dev/null || netstat -ltn 2>/dev/null
echo '##services'; systemctl list-units --type=service --state=running --no-legend --plain 2>/dev/null | awk '{print $1}'
echo '##end'
`

// ParseFacts reads the sections DiscoveryScript prints.
func ParseFacts(out string) HostFacts {
	var f HostFacts
	sections := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "##"); ok {
			cur = name
			continue
		}
		if cur != "" && strings.TrimSpace(line) != "" {
			sections[cur] = append(sections[cur], line)
		}
	}
	if l := sections["hostname"]; len(l) > 0 {
		f.Hostname = strings.TrimSpace(l[0])
	}
	for _, l := range sections["os"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "ID":
			f.OS = v
		case "VERSION_ID":
			f.OSVersion = v
		}
	}
	if l := sections["kernel"]; len(l) > 0 {
		f.Kernel = strings.TrimSpace(l[0])
	}
	if l := sections["cpu"]; len(l) > 0 {
		f.CPUCount, _ = strconv.Atoi(strings.TrimSpace(l[0]))
	}
	if l := sections["mem"]; len(l) > 0 {
		if fs := strings.Fields(l[0]); len(fs) >= 2 {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			f.MemoryMB = kb / 1024
		}
	}
	for i, l := range sections["disks"] {
		fs := strings.Fields(l)
		if i == 0 && len(fs) > 0 && fs[0] == "Filesystem" || len(fs) < 6 {
			continue
		}
		size, _ := strconv.ParseInt(fs[1], 10, 64)
		f.Disks = append(f.Disks, Disk{Device: fs[0], Mount: fs[5], SizeMB: size / 1024})
	}
	for _, l := range sections["ip"] {
		fs := strings.Fields(l)
		// "2: eth0    inet 10.0.0.5/24 brd ..." from ip -o addr
		for i := 0; i+1 < len(fs); i++ {
			if fs[i] == "inet" || fs[i] == "inet6" {
				ip, _, _ := strings.Cut(fs[i+1], "/")
				if ip != "127.0.0.1" && ip != "::1" && !strings.HasPrefix(ip, "fe80:") {
					f.IPAddresses = append(f.IPAddresses, ip)
				}
			}
		}
		if len(fs) > 0 && !strings.Contains(l, "inet") { // hostname -I
			for _, ip := range fs {
				if net.ParseIP(ip) != nil {
					f.IPAddresses = append(f.IPAddresses, ip)
				}
			}
		}
	}
	seenPort := map[string]bool{}
	for _, l := range sections["ports"] {
		fs := strings.Fields(l)
		// ss -Hltn: State Recv-Q Send-Q Local:Port Peer:Port
		// netstat -ltn: Proto Recv-Q Send-Q Local:Port Foreign State
		var local string
		switch {
		case len(fs) >= 5 && fs[0] == "LISTEN":
			local = fs[3]
		case len(fs) >= 6 && strings.HasPrefix(fs[0], "tcp"):
			local = fs[3]
		default:
			continue
		}
		i := strings.LastIndex(local, ":")
		if i < 0 {
			continue
		}
		port, err := strconv.Atoi(local[i+1:])
		if err != nil {
			continue
		}
		host := strings.Trim(local[:i], "[]")
		if key := host + ":" + local[i+1:]; !seenPort[key] {
			seenPort[key] = true
			f.Ports = append(f.Ports, ListeningPort{Proto: "tcp", Addr: host, Port: port})
		}
	}
	for _, l := range sections["services"] {
		if s := strings.TrimSpace(l); strings.HasSuffix(s, ".service") {
			f.Services = append(f.Services, strings.TrimSuffix(s, ".service"))
		}
	}
	return f
}
