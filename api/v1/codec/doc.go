// Package codec encodes and decodes the v1 API messages in the two media
// types every Mesos v1 endpoint speaks: application/json and
// application/x-protobuf.
//
// The JSON form is Mesos's, not protojson's: proto field names
// (snake_case), enums by name, bytes in base64, and 64-bit integers as JSON
// numbers. protojson writes int64 and uint64 as strings, which Python and
// JavaScript frameworks cannot do arithmetic on (Value.Range begin/end are
// uint64), so this package has its own encoder. Decoding is lenient the way
// Mesos clients expect: unknown keys are ignored, null is accepted for any
// field (an absent field), and 64-bit integers may be numbers or strings.
//
// Both codecs enforce proto2 required fields in both directions and name the
// missing field by its path (subscribe.framework_info.user). Decoding errors
// wrap errdefs.ErrInvalid, so handlers answer 400 through errdefs.HTTPStatus.
//
// Pick a codec for a request with ForContentType (answer 415 on error) and
// for its response with ForAccept (answer 406 on error).
package codec
