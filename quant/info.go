package quant

// BlobWidth returns the code width recorded in an Encode blob's header (0 for a blob
// too short to have one). It is for display; Decode checks the whole blob.
func BlobWidth(b []byte) uint8 {
	if len(b) < 3 || b[0] != formatVersion {
		return 0
	}
	return b[2]
}
