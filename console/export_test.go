package console

import "golang.org/x/crypto/bcrypt"

// FastHashes makes the tests' password hashes cheap: bcrypt's work factor is what makes a
// sign-in slow, under -race most of all, and the tests check the flow, not the factor.
func FastHashes() { bcryptCost = bcrypt.MinCost }
