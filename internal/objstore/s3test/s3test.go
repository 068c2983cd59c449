// Package s3test runs a real S3 server for tests: SeaweedFS's `weed server` (Apache-2.0),
// built once by scripts/seaweedfs.sh, on 127.0.0.1 only, with one identity (access key and
// secret) so that anonymous and wrongly signed requests are refused as on a real bucket.
//
// A test package shares one server (Shared) and stops it in its TestMain (Main); a test that
// kills and restarts the server starts its own (Start). Without the binary the tests skip,
// saying how to build it, unless CLIPD_REQUIRE_S3=1 (make test sets it): then they fail.
package s3test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/objstore"
)

// The identity every server accepts.
const (
	AccessKey = "clipdtestkey"
	SecretKey = "clipdtestsecret"
	Region    = "us-east-1"
)

// seaweedVersion must match scripts/seaweedfs.sh.
const seaweedVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// Binary is the weed binary: $CLIPD_WEED, else where scripts/seaweedfs.sh puts it.
func Binary() (string, error) {
	if p := os.Getenv("CLIPD_WEED"); p != "" {
		return p, nil
	}
	cache := os.Getenv("CLIPD_CACHE_DIR")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "clipd")
	}
	p := filepath.Join(cache, "seaweedfs-"+seaweedVersion, "weed")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("SeaweedFS is not built (%s missing): run `bash scripts/seaweedfs.sh` (make test does)", p)
	}
	return p, nil
}

// Server is one running SeaweedFS with its S3 gateway.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	dir      string // data and config
	ports    []int
	bin      string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

// Start starts a server of the test's own and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start(t.TempDir())
	if err != nil {
		missing(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	sharedDir  string
)

// Shared is the package's one server, started by its first caller; Main stops it.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "clipd-s3test-")
		if sharedErr == nil {
			shared, sharedErr = start(sharedDir)
		}
	})
	if sharedErr != nil {
		missing(t, sharedErr)
	}
	return shared
}

// Main runs a package's tests and stops the shared server after them: call it from TestMain
// as os.Exit(s3test.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	return code
}

// missing fails or skips a test that has no server.
func missing(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CLIPD_REQUIRE_S3") == "1" {
		t.Fatalf("s3test: %v", err)
	}
	t.Skipf("s3test: %v", err)
}

func start(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(9)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "s3.json")
	ident := fmt.Sprintf(`{"identities":[{"name":"clipd-tests","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, AccessKey, SecretKey)
	if err := os.WriteFile(conf, []byte(ident), 0o600); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(ports[6]), dir: dir, ports: ports, bin: bin}
	if err := s.launch(); err != nil {
		return nil, err
	}
	return s, nil
}

// launch starts the process on s's folder and ports and waits until S3 requests succeed.
func (s *Server) launch() error {
	p := s.ports
	// Each bucket is a SeaweedFS collection that takes 7 volumes at its first write: with
	// -volume.max=50 the 8th bucket of a server could not store anything (HTTP 500). Volumes
	// are created empty and sparse, so 1000 costs nothing until used.
	args := []string{"server", "-dir=" + filepath.Join(s.dir, "data"), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		fmt.Sprintf("-master.port=%d", p[0]), fmt.Sprintf("-master.port.grpc=%d", p[1]),
		fmt.Sprintf("-volume.port=%d", p[2]), fmt.Sprintf("-volume.port.grpc=%d", p[3]),
		fmt.Sprintf("-filer.port=%d", p[4]), fmt.Sprintf("-filer.port.grpc=%d", p[5]),
		"-s3", fmt.Sprintf("-s3.port=%d", p[6]), fmt.Sprintf("-s3.port.grpc=%d", p[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0", fmt.Sprintf("-metricsPort=%d", p[8]),
		"-s3.config=" + filepath.Join(s.dir, "s3.json"), "-master.volumeSizeLimitMB=64", "-volume.max=1000",
		"-master.telemetry=false", "-filer.localSocket=" + filepath.Join(s.dir, "filer.sock"),
		"-s3.localSocket=" + filepath.Join(s.dir, "s3.sock")}
	logf, err := os.OpenFile(filepath.Join(s.dir, "weed.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %v", s.bin, err)
	}
	s.mu.Lock()
	s.cmd, s.log = cmd, logf
	s.mu.Unlock()
	if err := s.waitReady(90 * time.Second); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// waitReady creates and removes a probe bucket until it works: the S3 gateway answers
// before the filer behind it is ready.
func (s *Server) waitReady(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c, err := s.client(ctx)
	if err != nil {
		return err
	}
	var last error
	for ctx.Err() == nil {
		if last = c.MakeBucket(ctx, "clipd-probe"); last == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("SeaweedFS at %s not ready after %v: %v (log: %s)", s.Endpoint, limit, last, filepath.Join(s.dir, "weed.log"))
}

// Kill ends the server with SIGKILL (a crash: nothing flushed, nothing closed).
func (s *Server) Kill() { s.signalAndWait(syscall.SIGKILL, 0) }

// Stop ends the server: SIGINT, then SIGKILL after 5 s (SeaweedFS stops slowly).
func (s *Server) Stop() { s.signalAndWait(syscall.SIGINT, 5*time.Second) }

func (s *Server) signalAndWait(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, logf := s.cmd, s.log
	s.cmd, s.log = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	if grace > 0 {
		select {
		case <-done:
		case <-time.After(grace):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	} else {
		<-done
	}
	logf.Close()
}

// Restart starts a stopped or killed server again on the same data and ports.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.launch(); err != nil {
		t.Fatalf("s3test: restart: %v", err)
	}
}

// Env is the environment a clipd process needs to reach this server as its one identity,
// and nothing else: no shared config files, no instance metadata lookups.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey, "AWS_REGION=" + Region,
		"AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_CONFIG_FILE=" + filepath.Join(s.dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(s.dir, "no-aws-credentials"), "AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv sets Env for an in-process test (restored after it).
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	for _, k := range []string{"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// client is a client of this server with the test identity, whatever the environment says.
func (s *Server) client(ctx context.Context) (*objstore.Client, error) {
	return objstore.New(ctx, objstore.Options{Endpoint: s.Endpoint, Region: Region, AccessKey: AccessKey, SecretKey: SecretKey, MaxAttempts: 2})
}

// Client is a client of the server for test set-up and checks.
func (s *Server) Client(t testing.TB) *objstore.Client {
	t.Helper()
	c, err := s.client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Bucket makes a new bucket named after the test (lower case, unique) and returns its name.
func (s *Server) Bucket(t testing.TB) string {
	t.Helper()
	name := bucketName(t.Name())
	if err := s.Client(t).MakeBucket(context.Background(), name); err != nil {
		t.Fatalf("s3test: making bucket %s: %v", name, err)
	}
	return name
}

var bucketSeq struct {
	sync.Mutex
	n int
}

func bucketName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	n := strings.Trim(b.String(), "-")
	if len(n) > 40 {
		n = n[:40]
	}
	bucketSeq.Lock()
	bucketSeq.n++
	k := bucketSeq.n
	bucketSeq.Unlock()
	return fmt.Sprintf("%s-%d-%d", strings.Trim(n, "-"), os.Getpid()%100000, k)
}

// freePorts finds n free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// SilentEndpoint is the URL of an endpoint on 127.0.0.1 that accepts connections and never
// answers (a hung store), closed when the test ends.
func SilentEndpoint(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return "http://" + l.Addr().String()
}
