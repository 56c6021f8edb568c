"""Cryptography: PSI, sealing between nodes, PKI, masks, and HE backends (`crypto.he`)."""
