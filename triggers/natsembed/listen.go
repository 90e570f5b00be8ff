package natsembed

import (
	"fmt"
	"net"
	"strings"
)

// CheckListen refuses to put the embedded server beyond loopback. It has
// no authentication: whoever reaches it can publish events (and so make
// proactived message customers), read the stream of customer data and
// delete it. A broker shared with other machines is an external NATS
// server with credentials (nats.url, nats.creds). An address that does not
// parse is left to Start to report.
func CheckListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("nats.listen %q is beyond loopback, and the embedded NATS server has no authentication: listen on 127.0.0.1, or use an external NATS server with credentials (nats.url, nats.creds)", addr)
}
