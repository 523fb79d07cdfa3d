package runbook

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// MetadataName reads metadata.name from a document, valid or not, and
// where it is: the API checks it against the runbook a version is added
// to, and the CLI learns where to push a file. ok is false when the
// document has no string there (or does not parse).
func MetadataName(src []byte) (name string, at Pos, ok bool) {
	if len(src) > MaxSourceBytes {
		return "", Pos{}, false
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(src)).Decode(&doc); err != nil {
		return "", Pos{}, false
	}
	n := &doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, key := range []string{"metadata", "name"} {
		if n = mappingValue(n, key); n == nil {
			return "", Pos{}, false
		}
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", Pos{}, false
	}
	return n.Value, Pos{Line: n.Line, Column: n.Column}, true
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
