package hostile

// UpgradeRequest is an HTTP/1.1 request that asks, or seems to ask, to
// switch protocols: Head (without its Host field and the empty line that
// ends it) and Body.
type UpgradeRequest struct {
	Name, Head, Body string
	// Forwarded is the Upgrade field an HTTP/1.1 upstream receives on a
	// route that allows websocket (the default), with "Connection:
	// Upgrade"; "" when the request goes as a plain one: no Upgrade, no
	// Connection naming it, no HTTP2-Settings. HTTP/2 upstreams always get
	// the plain request.
	Forwarded string
}

const (
	h2cSettings = "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
	connUpgrade = "Connection: Upgrade\r\n"
)

// Upgrades lists the h2c smuggling class: h2c (never tunnelled), its case
// and list variants, HTTP itself under other names, upgrades without
// "Connection: upgrade" or on HTTP/1.0 (not upgrades at all), protocols
// the route does not allow, and the allowed websocket beside them.
var Upgrades = []UpgradeRequest{
	{"h2c smuggling", "GET / HTTP/1.1\r\nUpgrade: h2c\r\n" + h2cSettings + "Connection: Upgrade, HTTP2-Settings\r\n", "", ""},
	{"h2c upper case", "GET / HTTP/1.1\r\nUpgrade: H2C\r\n" + h2cSettings + "Connection: Upgrade, HTTP2-Settings\r\n", "", ""},
	{"h2c without settings", "GET / HTTP/1.1\r\nUpgrade: h2c\r\n" + connUpgrade, "", ""},
	{"h2c with version", "GET / HTTP/1.1\r\nUpgrade: h2c/1\r\n" + connUpgrade, "", ""},
	{"h2c padded", "GET / HTTP/1.1\r\nUpgrade:  \th2c\t \r\n" + connUpgrade, "", ""},
	{"h2c POST with body", "POST / HTTP/1.1\r\nUpgrade: h2c\r\n" + h2cSettings + "Connection: Upgrade, HTTP2-Settings\r\nContent-Length: 4\r\n", "body", ""},
	{"h2 over cleartext", "GET / HTTP/1.1\r\nUpgrade: h2\r\n" + connUpgrade, "", ""},
	{"HTTP/2.0", "GET / HTTP/1.1\r\nUpgrade: HTTP/2.0\r\n" + connUpgrade, "", ""},
	{"HTTP/1.1", "GET / HTTP/1.1\r\nUpgrade: HTTP/1.1\r\n" + connUpgrade, "", ""},
	{"TLS/1.0 not allowed", "GET / HTTP/1.1\r\nUpgrade: TLS/1.0\r\n" + connUpgrade, "", ""},
	{"unknown protocol", "GET / HTTP/1.1\r\nUpgrade: foo\r\n" + connUpgrade, "", ""},
	{"websocket then h2c", "GET / HTTP/1.1\r\nUpgrade: websocket, h2c\r\n" + connUpgrade, "", "websocket"},
	{"h2c then websocket", "GET / HTTP/1.1\r\nUpgrade: h2c, websocket\r\n" + h2cSettings + "Connection: Upgrade, HTTP2-Settings\r\n", "", "websocket"},
	{"two Upgrade fields h2c first", "GET / HTTP/1.1\r\nUpgrade: h2c\r\nUpgrade: websocket\r\n" + connUpgrade, "", "websocket"},
	{"two Upgrade fields h2c second", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n" + connUpgrade, "", "websocket"},
	{"websocket", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n" + connUpgrade, "", "websocket"},
	{"websocket mixed case", "GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: UPGRADE\r\n", "", "WebSocket"},
	{"websocket with version", "GET / HTTP/1.1\r\nUpgrade: websocket/13\r\n" + connUpgrade, "", "websocket/13"},
	{"websocket trailing comma", "GET / HTTP/1.1\r\nUpgrade: websocket,\r\n" + connUpgrade, "", "websocket"},
	{"websocket and settings", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n" + h2cSettings + "Connection: Upgrade, HTTP2-Settings\r\n", "", "websocket"},
	{"websocket among Connection tokens", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n", "", "websocket"},
	{"malformed member", "GET / HTTP/1.1\r\nUpgrade: web socket\r\n" + connUpgrade, "", ""},
	{"empty Upgrade", "GET / HTTP/1.1\r\nUpgrade:\r\n" + connUpgrade, "", ""},
	{"Upgrade without Connection", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n", "", ""},
	{"h2c without Connection", "GET / HTTP/1.1\r\nUpgrade: h2c\r\n" + h2cSettings, "", ""},
	{"Connection keep-alive only", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n", "", ""},
	{"Connection upgrade without Upgrade", "GET / HTTP/1.1\r\n" + connUpgrade, "", ""},
	{"HTTP/1.0 websocket", "GET / HTTP/1.0\r\nUpgrade: websocket\r\n" + connUpgrade, "", ""},
	{"HTTP/1.0 h2c", "GET / HTTP/1.0\r\nUpgrade: h2c\r\n" + h2cSettings + "Connection: Upgrade, HTTP2-Settings\r\n", "", ""},
	{"settings alone", "GET / HTTP/1.1\r\n" + h2cSettings, "", ""},
}
