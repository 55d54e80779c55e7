"""The decoder: the decode loop, sampling, scoring, the token tree and the search strategies.

It renders nothing and knows no terminal: it takes token ids, a DecodeConfig and a constraint
factory, and returns ranked candidates (`results`).
"""
