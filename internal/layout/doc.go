// Package layout holds no code: its test keeps the repository's shape, the one-way import
// graph and the size of each package, as the README's layout table describes them.
package layout
