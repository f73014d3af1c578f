package subject

import "testing"

func TestTargetToken(t *testing.T) {
	tests := []struct {
		name string
		id   TargetID
		want string
	}{
		{"ipv4_http", TargetID{ep("10.0.0.1", TCP, 80), "http", "0123abcd"}, "10_0_0_1-TCP-80-http-0123abcd"},
		{"ipv6_udpping", TargetID{ep("2001:db8::1", UDP, 53), "udpping", "deadbeef"}, "2001-db8--1-UDP-53-udpping-deadbeef"},
		{"ipv6_unspecified", TargetID{ep("::", TCP, 0), "none", "00000000"}, "---TCP-0-none-00000000"},
		{"ipv6_trailing_zeros", TargetID{ep("2001:db8::", TCP, 443), "tcp", "ffffffff"}, "2001-db8---TCP-443-tcp-ffffffff"},
		{"mapped_unmapped", TargetID{ep("::ffff:10.0.0.1", UDP, 53), "udp", "00c0ffee"}, "10_0_0_1-UDP-53-udp-00c0ffee"},
		// Malformed fields still make a legal (but unparsable) token.
		{"method_with_dot", TargetID{ep("10.0.0.1", TCP, 80), "a.b", "0123abcd"}, "10_0_0_1-TCP-80-a_2eb-0123abcd"},
		{"hash_with_space", TargetID{ep("10.0.0.1", TCP, 80), "tcp", "01 3"}, "10_0_0_1-TCP-80-tcp-01_203"},
		{"zero_value", TargetID{}, "invalid-PROTO0-0--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.id.Token(); got != tt.want {
				t.Errorf("Token() = %q, want %q", got, tt.want)
			}
			if got := tt.id.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseTargetToken(t *testing.T) {
	tests := []struct {
		name    string
		tok     string
		want    TargetID
		wantErr bool
	}{
		{"ipv4_http", "10_0_0_1-TCP-80-http-0123abcd", TargetID{ep("10.0.0.1", TCP, 80), "http", "0123abcd"}, false},
		{"ipv6_ping", "2001-db8--1-UDP-0-ping-deadbeef", TargetID{ep("2001:db8::1", UDP, 0), "ping", "deadbeef"}, false},
		{"ipv6_unspecified", "---TCP-0-none-00000000", TargetID{ep("::", TCP, 0), "none", "00000000"}, false},
		{"method_digits", "10_0_0_1-TCP-80-h2-0123abcd", TargetID{ep("10.0.0.1", TCP, 80), "h2", "0123abcd"}, false},
		{"hash_upper", "10_0_0_1-TCP-80-http-0123ABCD", TargetID{}, true},
		{"hash_short", "10_0_0_1-TCP-80-http-0123abc", TargetID{}, true},
		{"hash_long", "10_0_0_1-TCP-80-http-0123abcde", TargetID{}, true},
		{"hash_not_hex", "10_0_0_1-TCP-80-http-0123abcg", TargetID{}, true},
		{"method_upper", "10_0_0_1-TCP-80-HTTP-0123abcd", TargetID{}, true},
		{"method_empty", "10_0_0_1-TCP-80--0123abcd", TargetID{}, true},
		{"method_escaped", "10_0_0_1-TCP-80-a_2eb-0123abcd", TargetID{}, true},
		{"no_method", "10_0_0_1-TCP-80-0123abcd", TargetID{}, true},
		{"bad_endpoint", "10_0_0_1-tcp-80-http-0123abcd", TargetID{}, true},
		{"zero_value_token", "invalid-PROTO0-0--", TargetID{}, true},
		{"hash_only", "0123abcd", TargetID{}, true},
		{"empty", "", TargetID{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkParse(t, "ParseTargetToken", ParseTargetToken, tt.tok, tt.want, tt.wantErr)
			if back := got.Token(); !tt.wantErr && back != tt.tok {
				t.Errorf("Token() of the parsed target = %q, want %q", back, tt.tok)
			}
		})
	}
}

func TestHashOf(t *testing.T) {
	// Fixed values: a change of the function renames every target.
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "811c9dc5"},
		{"http_params", "http|/|200", "8c6265c6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HashOf(tt.in)
			if got != tt.want {
				t.Errorf("HashOf(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !isHash(got) {
				t.Errorf("HashOf(%q) = %q is not 8 lower-case hex digits", tt.in, got)
			}
		})
	}
}

func TestNameToken(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "prober-1", "prober-1"},
		{"mixed_case", "LB1", "LB1"},
		{"dot", "lb1.dc-a", "lb1_2edc-a"},
		{"underscore_escaped", "a_b", "a_5fb"},
		{"space", "a b", "a_20b"},
		{"wildcards", "*>", "_2a_3e"},
		{"colon", "10.0.0.1:80", "10_2e0_2e0_2e1_3a80"},
		{"utf8", "é", "_c3_a9"},
		{"nul", "\x00", "_00"},
		{"high_byte", "\xff", "_ff"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NameToken(tt.in)
			if got != tt.want {
				t.Fatalf("NameToken(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.in == "" {
				return // the empty name has no token (ParseNameToken rejects "")
			}
			back, err := ParseNameToken(got)
			if err != nil || back != tt.in {
				t.Errorf("ParseNameToken(%q) = %q, %v; want %q", got, back, err, tt.in)
			}
		})
	}
}

func TestParseNameTokenRejects(t *testing.T) {
	tests := []struct {
		name, tok string
	}{
		{"empty", ""},
		{"dot", "a.b"},
		{"lone_underscore", "_"},
		{"short_escape", "a_2"},
		{"upper_hex_escape", "a_2Eb"},
		{"non_hex_escape", "a_zzb"},
		{"escaped_plain_byte", "_61"}, // 'a' must stay 'a'
		{"escaped_dash", "_2d"},       // '-' must stay '-'
		{"space", "a b"},
		{"utf8_raw", "é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, "ParseNameToken", ParseNameToken, tt.tok, "", true)
		})
	}
}

func TestPartition(t *testing.T) {
	// Fixed expected values: Partition must never change for a running
	// installation, so a change of the function has to fail here.
	tests := []struct {
		name string
		tok  string
		n    int
		want int
	}{
		{"ipv4_http_64", "10_0_0_1-TCP-80-http-0123abcd", 64, 51},
		{"ipv4_http_8", "10_0_0_1-TCP-80-http-0123abcd", 8, 3},
		{"ipv4_tcp_64", "192_168_88_1-TCP-80-tcp-00000000", 64, 28},
		{"ipv6_udp_64", "2001-db8--1-UDP-53-udp-deadbeef", 64, 18},
		{"ipv4_none_64", "10_0_0_1-UDP-53-none-ffffffff", 64, 25},
		{"empty_64", "", 64, 5},
		{"n_zero_is_default", "10_0_0_1-TCP-80-http-0123abcd", 0, 51},
		{"n_negative_is_default", "10_0_0_1-TCP-80-http-0123abcd", -3, 51},
		{"n_one", "10_0_0_1-TCP-80-http-0123abcd", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Partition(tt.tok, tt.n); got != tt.want {
				t.Errorf("Partition(%q, %d) = %d, want %d", tt.tok, tt.n, got, tt.want)
			}
		})
	}
	if Partitions != 64 {
		t.Errorf("Partitions = %d; it must never change (64)", Partitions)
	}
}
