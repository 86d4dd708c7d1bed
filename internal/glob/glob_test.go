package glob

import "testing"

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":              "",
		"ac:":           "ac:",
		`a*b?c[d]e\f`:   `a\*b\?c\[d\]e\\f`,
		"{get_cart@1:u": "{get_cart@1:u",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
