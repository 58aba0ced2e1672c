// Command ivr is the voice OTP server and its tools. It only wires the
// packages together: the call script is in callflow, SIP in sip, RTP in
// media, the recordings in prompts.
//
//	ivr demo
//	ivr serve --config ivr.yaml
//	ivr call --trunk sip:127.0.0.1:5080 --code 482913 +15551234567
//	ivr loadtest --spawn --calls 200 --cps 20
//	ivr version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "call":
		return cmdCall(ctx, args[1:], stdout, stderr)
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "trunks":
		return cmdTrunks(ctx, args[1:], stdout, stderr)
	case "loadtest":
		return cmdLoadtest(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "ivr", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "ivr: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `ivr: deliver one-time codes by phone call.

Commands:
  demo      place a real call to a built-in virtual phone on loopback, end to end
  serve     run the HTTP API and place calls through a SIP trunk
  call      place one voice-OTP call through a SIP trunk and print its timeline
  trunks    "trunks check": probe every configured trunk (OPTIONS, REGISTER) and report
  loadtest  drive calls through a server with a farm of virtual phones and report
  version   print the version

Run "ivr <command> --help" for the flags of a command.
`)
}
