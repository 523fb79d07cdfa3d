package sshexec

import (
	"reflect"
	"testing"
)

// TestParseFacts reads what DiscoveryScript prints on a host with the
// newer tools (ip, ss) and one with only their fallbacks (hostname -I,
// netstat).
func TestParseFacts(t *testing.T) {
	newer := `##hostname
web-1
##os
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
##kernel
6.1.0-18-amd64
##cpu
4
##mem
MemTotal:        8039748 kB
##disks
Filesystem     1024-blocks    Used Available Capacity Mounted on
/dev/vda1         41152736 9000000  30000000      24% /
/dev/vdb1         10485760       0  10485760       0% /data
##ip
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\       valid_lft forever preferred_lft forever
2: eth0    inet6 fe80::1/64 scope link \       valid_lft forever preferred_lft forever
2: eth0    inet6 2001:db8::5/64 scope global \       valid_lft forever preferred_lft forever
##ports
LISTEN 0      128          0.0.0.0:22        0.0.0.0:*
LISTEN 0      128             [::]:22           [::]:*
LISTEN 0      128          0.0.0.0:22        0.0.0.0:*
LISTEN 0      4096       127.0.0.1:5432      0.0.0.0:*
##services
nginx.service
ssh.service
not-a-unit
##end
`
	older := `##hostname
old-box
##os
##kernel
3.10.0
##cpu
1
##mem
MemTotal: 1024000 kB
##disks
##ip
192.168.1.9 not-an-ip
##ports
Active Internet connections (only servers)
Proto Recv-Q Send-Q Local Address           Foreign Address         State
tcp        0      0 0.0.0.0:80              0.0.0.0:*               LISTEN
##services
##end
`
	for _, c := range []struct {
		name string
		out  string
		want HostFacts
	}{
		{"newer tools", newer, HostFacts{
			Hostname: "web-1", OS: "debian", OSVersion: "12", Kernel: "6.1.0-18-amd64", CPUCount: 4, MemoryMB: 7851,
			Disks:       []Disk{{Mount: "/", Device: "/dev/vda1", SizeMB: 40188}, {Mount: "/data", Device: "/dev/vdb1", SizeMB: 10240}},
			IPAddresses: []string{"10.0.0.5", "2001:db8::5"},
			Ports:       []ListeningPort{{Proto: "tcp", Addr: "0.0.0.0", Port: 22}, {Proto: "tcp", Addr: "::", Port: 22}, {Proto: "tcp", Addr: "127.0.0.1", Port: 5432}},
			Services:    []string{"nginx", "ssh"},
		}},
		{"fallbacks", older, HostFacts{
			Hostname: "old-box", Kernel: "3.10.0", CPUCount: 1, MemoryMB: 1000,
			IPAddresses: []string{"192.168.1.9"},
			Ports:       []ListeningPort{{Proto: "tcp", Addr: "0.0.0.0", Port: 80}},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ParseFacts(c.out); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}
