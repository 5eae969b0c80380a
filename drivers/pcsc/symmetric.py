"""The block ciphers of the PSAM scheme and the diversification of card keys (pure, no I/O).

A PSAM (the secure access module in the reader's SAM slot) keeps the cooperative's master keys;
each CPU card keeps keys diversified from them by its own 8-byte identifier, so that one card
taken apart reveals only its own keys. The formula is PBOC's (JR/T 0025, as PSAMs compute it
for "DELIVERY KEY" / "INIT FOR DESCRYPT", `80 1A`, and as the issuer's key management system
computes it at personalisation), one level per 8-byte diversification factor `f`:

    3DES (16-byte key, 8-byte block):   child = 3DES(MK, f) || 3DES(MK, ~f)
    SM4  (16-byte key, 16-byte block):  child = SM4(MK, f || ~f)

where `~f` is `f` with every bit inverted, 3DES is two-key triple DES (EDE, K1 K2 K1) in ECB and
SM4 is the block cipher of GB/T 32907-2016 in ECB. Further levels diversify the child again
with the next factor. Both ciphers come from `cryptography` (43 or later: SM4 in
`algorithms`, TripleDES moved to `hazmat.decrepit`).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # cryptography < 43: setup.py asks for 43, this only says why
    raise ImportError("the PSAM scheme needs cryptography 43 or later (TripleDES in "
                      "hazmat.decrepit); install it with pip install 'cryptography>=43'"
                      ) from None

#: Algorithm codes as the PSAM and the cards of this scheme report them (docs/card.md).
ALG_3DES = 0x01
ALG_SM4 = 0x02
NAMES = {ALG_3DES: "3DES", ALG_SM4: "SM4"}
BLOCK = {ALG_3DES: 8, ALG_SM4: 16}
KEY_LEN = 16                # double-length 3DES and SM4 keys alike
FACTOR_LEN = 8              # one diversification level


def _cipher(alg: int, key: bytes):
    if len(key) != KEY_LEN:
        raise ValueError(f"a {NAMES.get(alg, alg)} key is {KEY_LEN} bytes, got {len(key)}")
    if alg == ALG_3DES:             # two-key EDE: K1 K2 K1 (24 bytes, as cryptography wants)
        return Cipher(TripleDES(key + key[:8]), modes.ECB())
    if alg == ALG_SM4:
        return Cipher(algorithms.SM4(key), modes.ECB())
    raise ValueError(f"unknown algorithm code {alg:#04x} (known: 01 3DES, 02 SM4)")


def block_size(alg: int) -> int:
    try:
        return BLOCK[alg]
    except KeyError:
        raise ValueError(f"unknown algorithm code {alg:#04x} (known: 01 3DES, 02 SM4)") from None


def encrypt(alg: int, key: bytes, data: bytes) -> bytes:
    """ECB encryption of whole blocks (no padding: the caller sends whole blocks)."""
    if not data or len(data) % block_size(alg):
        raise ValueError(f"{NAMES[alg]} encrypts whole {BLOCK[alg]}-byte blocks, got "
                         f"{len(data)} bytes")
    enc = _cipher(alg, key).encryptor()
    return enc.update(data) + enc.finalize()


def decrypt(alg: int, key: bytes, data: bytes) -> bytes:
    if not data or len(data) % block_size(alg):
        raise ValueError(f"{NAMES[alg]} decrypts whole {BLOCK[alg]}-byte blocks, got "
                         f"{len(data)} bytes")
    dec = _cipher(alg, key).decryptor()
    return dec.update(data) + dec.finalize()


def invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def diversify_once(alg: int, master: bytes, factor: bytes) -> bytes:
    """The child key of `master` for one 8-byte factor (the formula in the module's text)."""
    if len(factor) != FACTOR_LEN:
        raise ValueError(f"a diversification factor is {FACTOR_LEN} bytes, got {len(factor)}")
    if alg == ALG_3DES:
        return encrypt(alg, master, factor) + encrypt(alg, master, invert(factor))
    return encrypt(alg, master, factor + invert(factor))


def diversify(alg: int, master: bytes, factors: bytes) -> bytes:
    """The key diversified level by level with each 8 bytes of `factors` (1 to 3 levels)."""
    if not factors or len(factors) % FACTOR_LEN or len(factors) > 3 * FACTOR_LEN:
        raise ValueError(f"diversification takes 1 to 3 factors of {FACTOR_LEN} bytes, got "
                         f"{len(factors)} bytes")
    key = master
    for i in range(0, len(factors), FACTOR_LEN):
        key = diversify_once(alg, key, factors[i:i + FACTOR_LEN])
    return key
