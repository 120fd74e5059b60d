// Package recordio reads and writes Mesos RecordIO, the framing of every
// v1 streaming response: each record is its length in bytes as ASCII
// decimal, a line feed, then that many bytes.
//
//	records     = *record
//	record      = record-size LF record-data
//	record-size = 1*DIGIT
//
// Chunk boundaries of the underlying HTTP transfer mean nothing; a record
// may arrive in pieces and one read may hold several records. The Reader
// bounds record sizes so a corrupt or hostile length cannot make the process
// allocate without limit. Encoder and Decoder put a codec on top, one
// message per record.
package recordio
