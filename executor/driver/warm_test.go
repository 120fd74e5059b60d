package driver

import (
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"google.golang.org/protobuf/proto"
)

// Warm skips what fails to encode; a message the codecs refused (a required
// field missing) would warm nothing, so every one must round-trip intact.
func TestWarmMessagesRoundTrip(t *testing.T) {
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		for _, m := range warmMessages() {
			b, err := c.Marshal(m)
			if err != nil {
				t.Errorf("%s: marshal %T: %v", c.MediaType(), m, err)
				continue
			}
			back := m.ProtoReflect().New().Interface()
			if err := c.Unmarshal(b, back); err != nil {
				t.Errorf("%s: unmarshal %T: %v", c.MediaType(), m, err)
				continue
			}
			if !proto.Equal(m, back) {
				t.Errorf("%s: %T changed in the round trip", c.MediaType(), m)
			}
		}
	}
	Warm()
}
