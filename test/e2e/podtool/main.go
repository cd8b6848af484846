// Command podtool is the e2e tests' traffic tool inside pods. The bundle's
// images carry only their own program, so a test builds podtool static and
// mounts it into a pod of the bundled httpecho image (a hostPath volume) as the
// container's command, or runs it there with `kubectl exec`:
//
//	podtool serve -listen :9090   GET /blob?size=N&seed=S: N bytes of Blob(S)
//	podtool get URL               prints "<bytes> <sha256 hex>" of the body
//	podtool get -body URL         prints the body
//
// Blob(seed) is sha256(seed || 8-byte big-endian block index) for block 0, 1,
// ...: deterministic, so the test computes the checksum the receiver must see
// without moving the bytes itself.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: podtool serve|get ...")
	}
	switch os.Args[1] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		listen := fs.String("listen", ":9090", "address to listen on")
		_ = fs.Parse(os.Args[2:])
		http.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
			size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
			if err != nil || size < 0 || size > 1<<30 {
				http.Error(w, "size: want 0..1GiB", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			if _, err := io.CopyN(w, &blob{seed: []byte(r.URL.Query().Get("seed"))}, size); err != nil {
				log.Printf("blob to %s: %v", r.RemoteAddr, err)
			}
		})
		http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		log.Printf("podtool listening on %s", *listen)
		srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second}
		log.Fatal(srv.ListenAndServe())
	case "get":
		fs := flag.NewFlagSet("get", flag.ExitOnError)
		body := fs.Bool("body", false, "print the body instead of its size and sha256")
		timeout := fs.Duration("timeout", time.Minute, "the whole request's deadline")
		_ = fs.Parse(os.Args[2:])
		if fs.NArg() != 1 {
			log.Fatal("usage: podtool get [-body] URL")
		}
		c := &http.Client{Timeout: *timeout}
		resp, err := c.Get(fs.Arg(0))
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			log.Fatalf("%s: %s", fs.Arg(0), resp.Status)
		}
		if *body {
			if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
				log.Fatal(err)
			}
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil {
			log.Fatalf("after %d bytes: %v", n, err)
		}
		fmt.Printf("%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

// blob is the endless stream Blob(seed).
type blob struct {
	seed  []byte
	i     uint64
	block []byte
}

func (b *blob) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(b.block) == 0 {
			var idx [8]byte
			binary.BigEndian.PutUint64(idx[:], b.i)
			b.i++
			sum := sha256.Sum256(append(append([]byte{}, b.seed...), idx[:]...))
			b.block = sum[:]
		}
		c := copy(p[n:], b.block)
		b.block = b.block[c:]
		n += c
	}
	return n, nil
}
