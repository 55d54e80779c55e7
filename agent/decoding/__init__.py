"""The decoder: the decode loop, sampling, scoring, the token tree and the search strategies.

It renders nothing and knows no terminal: it takes token ids, a DecodeConfig and a constraint
factory, and returns ranked candidates. Modules: `results` (the result types, a leaf), `constraint`
(the interface to the grammar), `decode`, `sampling`, `kv_cache`, `scoring`, `token_tree`, one
module per strategy (`single`, `beam`, `best_of_n`, `tree`, `refine`), their registry
(`strategies`) and the one entry point `search.search_response`.
"""
