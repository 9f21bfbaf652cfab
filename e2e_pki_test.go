package main

// End-to-end security tests against the real binary over real sockets: TLS
// and client certificates on both listeners (--web.config.file, the standard
// Prometheus web configuration), a real Prometheus Agent pushing over mutual
// TLS, the public listener never serving what belongs on the internal one,
// slow clients cut off by the read timeouts, and thousands of idle
// connections that do not starve real pushes.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"
)

// testPKI is a throwaway certificate authority, a server certificate for
// 127.0.0.1, ::1 and localhost, and a client certificate, written as PEM
// files into a test's temporary directory; and a client certificate of an
// unrelated CA that fedgate must refuse.
type testPKI struct {
	caFile                 string
	serverCert, serverKey  string
	clientCert, clientKey  string
	roots                  *x509.CertPool
	client, otherCAsClient tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCA(t, "fedgate e2e CA")
	other, otherKey := newCA(t, "unrelated CA")
	p := &testPKI{roots: x509.NewCertPool()}
	p.roots.AddCert(ca)
	p.caFile = writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})))
	p.serverCert, p.serverKey, _ = issueCert(t, dir, "server", ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "fedgate"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	clientTemplate := func() *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: clusters[0].id},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
	p.clientCert, p.clientKey, p.client = issueCert(t, dir, "client", ca, caKey, clientTemplate())
	_, _, p.otherCAsClient = issueCert(t, dir, "other-ca-client", other, otherKey, clientTemplate())
	return p
}

// newCA returns a self-signed ECDSA P-256 CA certificate valid for an hour.
func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// issueCert signs tmpl (an ECDSA P-256 leaf valid for an hour) with the CA,
// writes name.pem and name-key.pem into dir, and returns their paths and the
// key pair.
func issueCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serialNumber(t)
	tmpl.NotBefore = time.Now().Add(-time.Minute)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if pair, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name+".pem", string(certPEM)), writeFile(t, dir, name+"-key.pem", string(keyPEM)), pair
}

func serialNumber(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// webConfig writes a Prometheus web configuration file with the server
// certificate and, if requireClientCert, RequireAndVerifyClientCert
// against the CA.
func (p *testPKI) webConfig(t *testing.T, requireClientCert bool) string {
	t.Helper()
	cfg := fmt.Sprintf("tls_server_config:\n  cert_file: %q\n  key_file: %q\n", p.serverCert, p.serverKey)
	if requireClientCert {
		cfg += fmt.Sprintf("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: %q\n", p.caFile)
	}
	return writeFile(t, t.TempDir(), "web.yml", cfg)
}

// tlsClient trusts roots and, when asked for a client certificate, presents
// cert (none if nil) whatever CAs the server names as acceptable: a client
// certificate of another CA really reaches the server.
func tlsClient(t *testing.T, roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	t.Helper()
	tc := &tls.Config{RootCAs: roots}
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}
