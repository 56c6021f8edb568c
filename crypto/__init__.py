"""Cryptography: PSI, sealing between nodes, PKI, CKKS contexts, masks."""
