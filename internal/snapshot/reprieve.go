package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// DefaultReprieveWindow is how long a snapshot waits, after storing a
// reprieve, before it checks that the chunks it names are still there;
// a garbage collector deletes nothing later than as long after it listed
// reprieves (see package gc).
const DefaultReprieveWindow = 5 * time.Second

// A reprieve names the chunks a snapshot found already stored and relies
// on: the magic, a version byte, a count, and the addresses.
var reprieveMagic = [4]byte{'F', 'R', 'P', 'V'}

const reprieveVersion = 1

// MarshalReprieve encodes a reprieve for addrs.
func MarshalReprieve(addrs []Address) []byte {
	b := make([]byte, 0, 9+len(addrs)*len(Address{}))
	b = append(b, reprieveMagic[:]...)
	b = append(b, reprieveVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(addrs)))
	for _, a := range addrs {
		b = append(b, a[:]...)
	}
	return b
}

// ParseReprieve decodes a reprieve.
func ParseReprieve(data []byte) ([][32]byte, error) {
	if len(data) < 9 || [4]byte(data[:4]) != reprieveMagic {
		return nil, errors.New("not a reprieve")
	}
	if data[4] != reprieveVersion {
		return nil, fmt.Errorf("reprieve version %d; this ferry reads version %d", data[4], reprieveVersion)
	}
	n := binary.BigEndian.Uint32(data[5:9])
	rest := data[9:]
	if uint64(len(rest)) != uint64(n)*32 {
		return nil, fmt.Errorf("reprieve of %d addresses holds %d bytes", n, len(rest))
	}
	out := make([][32]byte, n)
	for i := range out {
		out[i] = [32]byte(rest[i*32:])
	}
	return out, nil
}
