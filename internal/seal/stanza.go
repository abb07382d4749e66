package seal

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// stanzaType is the age recipient type ferry wraps file keys with.
const stanzaType = "ferry"

// wrapAD is the associated data of a wrapped file key: a label, the key id
// and the object's name, so that a stanza opens only under the name it
// was written for.
func wrapAD(id [8]byte, name string) []byte {
	return fmt.Appendf(nil, "ferry object v1\x00%x\x00%s", id, name)
}

// recipient wraps the file key of one object under one key.
type recipient struct {
	key  *Key
	name string
}

func (r recipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	aead, err := chacha20poly1305.NewX(r.key.wrap[:])
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(fileKey)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	body := aead.Seal(nonce, nonce, fileKey, wrapAD(r.key.id, r.name))
	return []*age.Stanza{{Type: stanzaType, Args: []string{r.key.ID()}, Body: body}}, nil
}

// identity unwraps the file key of the object called name with whichever
// key of ring its stanza names. It remembers the key ids it met, so that a
// reader without the key can say which one the object needs.
type identity struct {
	ring *Ring
	name string
	met  []string
}

// errNotOpened means a stanza named one of our keys and did not open: the
// object was altered, or moved from another name.
var errNotOpened = errors.New("its key stanza does not open under its key and name: altered, or moved from another name")

func (id *identity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	for _, s := range stanzas {
		if s.Type != stanzaType || len(s.Args) != 1 {
			continue
		}
		id.met = append(id.met, s.Args[0])
		var kid [8]byte
		if b, err := hex.DecodeString(s.Args[0]); err != nil || len(b) != len(kid) {
			continue
		} else {
			kid = [8]byte(b)
		}
		k := id.ring.byID(kid)
		if k == nil {
			continue
		}
		aead, err := chacha20poly1305.NewX(k.wrap[:])
		if err != nil {
			return nil, err
		}
		if len(s.Body) < aead.NonceSize() {
			return nil, errNotOpened
		}
		fileKey, err := aead.Open(nil, s.Body[:aead.NonceSize()], s.Body[aead.NonceSize():], wrapAD(k.id, id.name))
		if err != nil {
			return nil, errNotOpened
		}
		return fileKey, nil
	}
	return nil, age.ErrIncorrectIdentity
}
