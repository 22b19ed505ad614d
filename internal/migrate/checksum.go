package migrate

import (
	"bytes"
	"hash/crc32"
)

// bom is the UTF-8 byte order mark, which Flyway strips from the first line.
var bom = []byte{0xEF, 0xBB, 0xBF}

// checksum computes Flyway's checksum of a migration file: CRC32 (IEEE) updated with the UTF-8
// bytes of each line, lines split as Java's BufferedReader.readLine splits them (at "\n", "\r\n"
// or "\r", terminators excluded), a leading BOM removed, stored as a signed 32-bit int.
//
// Because the terminators are excluded, files differing only in line endings (a checkout with
// autocrlf, say) have the same checksum, and so do they in Flyway.
func checksum(data []byte) int32 {
	data = bytes.TrimPrefix(data, bom)
	h := crc32.NewIEEE()
	for _, line := range readLines(data) {
		_, _ = h.Write(line)
	}
	return int32(h.Sum32()) //nolint:gosec // Flyway stores the CRC as Java's signed int.
}

// readLines splits data as BufferedReader.readLine does: "\r\n" is one terminator, a lone "\r"
// or "\n" is one too, and a final terminator does not start another (empty) line.
func readLines(data []byte) [][]byte {
	var lines [][]byte
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i])
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return lines
}
