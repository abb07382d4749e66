package config

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		str  string // String() when it differs from in
	}{
		{in: "file:///var/backups/app", want: Target{Scheme: "file", Path: "/var/backups/app"}},
		{in: "file:///var/backups/app/", want: Target{Scheme: "file", Path: "/var/backups/app"}, str: "file:///var/backups/app"},
		{in: "file:/var/x/../y", want: Target{Scheme: "file", Path: "/var/y"}, str: "file:///var/y"},
		{in: "file:///", want: Target{Scheme: "file", Path: "/"}},
		{in: "file:///with%20space/%3Fq", want: Target{Scheme: "file", Path: "/with space/?q"}},
		{in: "FILE:///x", want: Target{Scheme: "file", Path: "/x"}, str: "file:///x"},
		{in: "s3://bucket", want: Target{Scheme: "s3", Bucket: "bucket"}},
		{in: "file:///srv/app@2024", want: Target{Scheme: "file", Path: "/srv/app@2024"}},
		{in: "s3://bucket/user@example.com/a:b@c", want: Target{Scheme: "s3", Bucket: "bucket", Prefix: "user@example.com/a:b@c"}},
		{in: "s3://bucket/", want: Target{Scheme: "s3", Bucket: "bucket"}, str: "s3://bucket"},
		{in: "s3://bucket//app/db/", want: Target{Scheme: "s3", Bucket: "bucket", Prefix: "app/db"}, str: "s3://bucket/app/db"},
		{in: "s3://my.bucket-1/a%20b", want: Target{Scheme: "s3", Bucket: "my.bucket-1", Prefix: "a b"}},
		{
			in:   "s3://bucket/prefix?endpoint=http://127.0.0.1:7070&region=us-east-1&force-path-style=true",
			want: Target{Scheme: "s3", Bucket: "bucket", Prefix: "prefix", Endpoint: "http://127.0.0.1:7070", Region: "us-east-1", ForcePathStyle: true},
		},
		{
			in:   "s3://bucket/p?force-path-style=1&region=auto&endpoint=https%3A%2F%2Fs3.example.com%2Fbase",
			want: Target{Scheme: "s3", Bucket: "bucket", Prefix: "p", Endpoint: "https://s3.example.com/base", Region: "auto", ForcePathStyle: true},
			str:  "s3://bucket/p?endpoint=https://s3.example.com/base&region=auto&force-path-style=true",
		},
		{in: "s3://bucket?force-path-style=false", want: Target{Scheme: "s3", Bucket: "bucket"}, str: "s3://bucket"},
		{in: "s3://bucket/p?", want: Target{Scheme: "s3", Bucket: "bucket", Prefix: "p"}, str: "s3://bucket/p"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURL(tt.in)
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseURL(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			wantStr := tt.str
			if wantStr == "" {
				wantStr = tt.in
			}
			if s := got.String(); s != wantStr {
				t.Errorf("String() = %q, want %q", s, wantStr)
			}
			again, err := ParseURL(got.String())
			if err != nil || again != got {
				t.Errorf("ParseURL(String()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // the whole message
	}{
		{"s3://", `replica URL "s3://": missing bucket name`},
		{"s3:///prefix", `replica URL "s3:///prefix": missing bucket name`},
		{"ftp://host/x", `unknown scheme "ftp" in replica URL "ftp://host/x"; expected file:///abs/path or s3://bucket/prefix`},
		{"", `replica URL "": empty; expected file:///abs/path or s3://bucket/prefix`},
		{"/data/backup", `replica URL "/data/backup": missing scheme; expected file:///abs/path or s3://bucket/prefix`},
		{"file://host/x", `replica URL "file://host/x": file URLs take no host (got "host"); write file:///abs/path`},
		{"file://relative", `replica URL "file://relative": file URLs take no host (got "relative"); write file:///abs/path`},
		{"file:relative/path", `replica URL "file:relative/path": path must be absolute, as in file:///abs/path`},
		{"file://", `replica URL "file://": missing path; write file:///abs/path`},
		{"file:///x?region=a", `replica URL "file:///x?region=a": file URLs take no query parameters`},
		{"file:///x#frag", `replica URL "file:///x#frag": unexpected fragment (#...)`},
		{"s3://Bucket/x", `replica URL "s3://Bucket/x": invalid bucket name "Bucket": may only contain lowercase letters, digits, '.' and '-'`},
		{"s3://ab", `replica URL "s3://ab": invalid bucket name "ab": must be 3 to 63 characters long`},
		{"s3://" + strings.Repeat("a", 64), `must be 3 to 63 characters long`},
		{"s3://a_b_c", `may only contain lowercase letters`},
		{"s3://-abc", `must begin and end with a letter or digit`},
		{"s3://abc-", `must begin and end with a letter or digit`},
		{"s3://a..b", `must not contain two adjacent periods`},
		{"s3://192.168.1.1", `must not be formatted as an IP address`},
		{"s3://xn--abc", `must not begin with "xn--"`},
		{"s3://abc-s3alias", `must not end with "-s3alias"`},
		{"s3://bucket:9000/x", `replica URL "s3://bucket:9000/x": bucket name "bucket:9000" has a port; put the server in ?endpoint=`},
		{"s3://bucket/a//b", `replica URL "s3://bucket/a//b": prefix "a//b" has an empty segment (//)`},
		{"s3://bucket/a/../b", `prefix "a/../b" has a ".." segment`},
		{"s3://bucket/./b", `prefix "./b" has a "." segment`},
		{"s3://bucket/%ff", `prefix is not valid UTF-8`},
		{"s3://bucket/x?regoin=us-east-1", `replica URL "s3://bucket/x?regoin=[redacted]": unknown query parameter "regoin"; known: endpoint, region, force-path-style`},
		{"s3://bucket/x?region=a&region=b", `query parameter "region" given 2 times`},
		{"s3://bucket/x?region=", `region is empty`},
		{"s3://bucket/x?region=us%20east", `region "us east" may only contain`},
		{"s3://bucket/x?endpoint=127.0.0.1:7070", `endpoint must be an http:// or https:// URL`},
		{"s3://bucket/x?endpoint=ftp://h", `endpoint must be an http:// or https:// URL`},
		{"s3://bucket/x?endpoint=http://", `endpoint has no host`},
		{"s3://bucket/x?endpoint=http://h:99999", `endpoint port "99999" is out of range`},
		{"s3://bucket/x?endpoint=http://h:", `endpoint has an empty port`},
		{"s3://bucket/x?endpoint=http://h/?a=b", `endpoint must not have a query or fragment`},
		{"s3://bucket/x?force-path-style=maybe", `force-path-style must be true or false, not "maybe"`},
		{"s3://bucket/x?a=%zz", `invalid query`},
		{"s3:bucket", `replica URL "s3:bucket": expected s3://bucket/prefix`},
		{"s3://bu cket", `not a URL`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseURL(tt.in)
			if err == nil {
				t.Fatalf("ParseURL(%q) succeeded, want error %q", tt.in, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("ParseURL(%q) error\n got: %s\nwant: %s", tt.in, msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
		})
	}
}

// A user who puts credentials into a URL must not see them echoed into a
// terminal, a log or a CI transcript by the error that rejects the URL.
func TestParseURLNeverEchoesCredentials(t *testing.T) {
	const secret = "wJalrXUtnFEMIK7MDENG"
	for _, in := range []string{
		"s3://AKIAEXAMPLE:" + secret + "@bucket/x",
		"s3://" + secret + "@bucket/x",
		"s3://AKIAEXAMPLE:wJal/" + secret + "@bucket/x",
		"s3://AKIAEXAMPLE:wJal/" + secret + "/x@bucket/x?region=a",
		"ftp://user:" + secret + "@host/x",
		"s3://bucket/x?secret-access-key=" + secret,
		"s3://bucket/x?region=a&aws_secret=" + secret + "#frag",
		"s3://bucket/x?endpoint=http://k:" + secret + "@host:9000",
		"s3://bucket/x?endpoint=http://" + secret + "@host:9000&region=a",
		"s3://bucket/x?endpoint=http://k:wJal/" + secret + "@host:9000",
		"file://u:" + secret + "@/x",
	} {
		_, err := ParseURL(in)
		if err == nil {
			t.Fatalf("ParseURL(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error for %q shows the credential: %s", in, err)
		}
		if !strings.Contains(err.Error(), "[redacted]") {
			t.Errorf("error for %q does not show where the URL was redacted: %s", in, err)
		}
	}
}

func TestTargetJoin(t *testing.T) {
	base, _ := ParseURL("s3://bucket/app?region=eu-west-1")
	root, _ := ParseURL("s3://bucket")
	dir, _ := ParseURL("file:///srv/replica")
	tests := []struct {
		t    Target
		key  string
		want string
	}{
		{base, "builds/42.tar", "s3://bucket/app/builds/42.tar?region=eu-west-1"},
		{base, "/builds/42.tar/", "s3://bucket/app/builds/42.tar?region=eu-west-1"},
		{base, "../../etc/passwd", "s3://bucket/app/etc/passwd?region=eu-west-1"},
		{base, "", "s3://bucket/app?region=eu-west-1"},
		{root, "a//b/./c", "s3://bucket/a/b/c"},
		{dir, "x/y", "file:///srv/replica/x/y"},
		{dir, "../../x", "file:///srv/replica/x"},
	}
	for _, tt := range tests {
		got := tt.t.Join(tt.key)
		if got.String() != tt.want {
			t.Errorf("%s.Join(%q) = %s, want %s", tt.t, tt.key, got, tt.want)
		}
		if again, err := ParseURL(got.String()); err != nil || again != got {
			t.Errorf("Join result %s does not round-trip: %+v, %v", got, again, err)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"file:///var/backups/app",
		"file:/x/../y",
		"s3://bucket/prefix?endpoint=http://127.0.0.1:7070&region=us-east-1&force-path-style=true",
		"s3://my.bucket/a%20b/c?region=auto",
		"s3://bucket/%E2%82%AC?endpoint=https%3A%2F%2Fh%2Fp",
		"s3://",
		"s3://u:p@bucket/x?k=v#f",
		"ftp://x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseURL(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error for %q: %q", s, err)
			}
			return
		}
		str := got.String()
		again, err := ParseURL(str)
		if err != nil {
			t.Fatalf("ParseURL(%q) = %+v, whose String %q fails to parse: %v", s, got, str, err)
		}
		if again != got {
			t.Fatalf("round trip of %q through %q: got %+v, want %+v", s, str, again, got)
		}
		if again.String() != str {
			t.Fatalf("String not stable: %q then %q", str, again.String())
		}
	})
}
