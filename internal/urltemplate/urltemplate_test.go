package urltemplate

import "testing"

func TestTemplate(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/orders/1340cbae-5c4e-4a8b-9d3e-2f1a0b9c8d7e", "/orders/{id}"},
		{"/orders/1340CBAE-5C4E-4A8B-9D3E-2F1A0B9C8D7E/items", "/orders/{id}/items"},
		{"/orders/1340cbae5c4e4a8b9d3e2f1a0b9c8d7e", "/orders/{id}"}, // UUID without dashes
		{"/stock/42", "/stock/{id}"},
		{"/users/42/orders/7?expand=items#top", "/users/{id}/orders/{id}"},
		{"/files/5f8d0d55b54764421b7156c3", "/files/{id}"},                     // MongoDB ObjectId
		{"/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/commits/{id}"}, // SHA-1
		{"/cart;jsessionid=0A1B2C3D", "/cart"},
		{"/a/12;v=3/b", "/a/{id}/b"},
		{"http://shop:8080/orders/7", "http://shop:8080/orders/{id}"},
		{"/v1/items", "/v1/items"},
		{"/v2", "/v2"},
		{"/deadbeef", "/deadbeef"},                   // hex letters, no digit: a word
		{"/accepted/cafe", "/accepted/cafe"},         // words of hex letters
		{"/abc123", "/abc123"},                       // short hex with a digit
		{"/a1b2c3d4", "/{id}"},                       // 8 hex digits with a digit
		{"/2024-01-31/report", "/2024-01-31/report"}, // a date is not an id
		{"/1340cbae-5c4e-4a8b-9d3e", "/1340cbae-5c4e-4a8b-9d3e"},
		{"/item-42", "/item-42"},
		{"/42.json", "/42.json"},
		{"/", "/"},
		{"", ""},
		{"//7//", "//{id}//"},
		{"42", "{id}"},
		{"?q=1", ""},
		{"Tomcat Servlet Process", "Tomcat Servlet Process"},
		{"/pkg.Service/Method2", "/pkg.Service/Method2"},
	} {
		if got := Template(c.in); got != c.want {
			t.Errorf("Template(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func BenchmarkTemplate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Template("/orders/1340cbae-5c4e-4a8b-9d3e-2f1a0b9c8d7e/items/42?x=1")
	}
}
