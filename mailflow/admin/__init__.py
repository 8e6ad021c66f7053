"""The staff's and operators' tools: status, previews and exports, doctor, init of a
site, and the demo."""
