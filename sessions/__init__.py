"""Persistence, installed as `agent.sessions`: the SQLite schema (`schema`), the store (`store`, with
`connection` (opening, write transactions), `identity` (whose database a file is), `text` (the one
UTF-8 sanitizer), `rows`, `records`, `errors`, `checkpoint`), export (`export`), the plain one-line
summaries (`summary`) and re-running a stored session (`replay`). Nothing here draws on a terminal."""
