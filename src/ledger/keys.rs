//! Deterministic Ed25519 key pairs, the one signature-verification path of the ledger, and
//! the salted commitments to agents' private data.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::{Hash, PublicKey, SignatureBytes};

/// Domain byte of a private-data commitment, `SHA256(0x03 || salt || data)`.
pub const COMMITMENT_DOMAIN: u8 = 0x03;

/// Whose key (or salt) is derived: the role byte of the derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A market agent, which signs its consensus messages and settlements.
    Agent = 1,
    /// A validator node, which signs votes on blocks.
    Validator = 2,
    /// The salt of an agent's private-data commitment (not a key).
    Salt = 3,
    /// The key that signs a sweep's `manifest.json` (index 0), derived from the sweep seed.
    Sweep = 4,
}

/// `SHA256(seed u64 LE || role byte || index u32 LE)`: the secret seed of a key, or a salt.
pub fn derive_secret(seed: u64, role: Role, index: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update([role as u8]);
    h.update(index.to_le_bytes());
    h.finalize().into()
}

/// An Ed25519 key pair derived from a seed, a role and an index (reproducible runs).
#[derive(Debug, Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl KeyPair {
    /// The key pair whose secret is [`derive_secret`]`(seed, role, index)`.
    pub fn derive(seed: u64, role: Role, index: u32) -> Self {
        KeyPair {
            signing: SigningKey::from_bytes(&derive_secret(seed, role, index)),
        }
    }

    /// The 32-byte compressed public key.
    pub fn public_key(&self) -> PublicKey {
        self.signing.verifying_key().to_bytes()
    }

    /// The Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> SignatureBytes {
        self.signing.sign(message).to_bytes()
    }
}

/// Why a signature is refused by [`verify_signature`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureFault {
    /// The public key is not 32 bytes.
    #[error("public key is not 32 bytes")]
    KeyLength,
    /// The signature is not 64 bytes.
    #[error("signature is not 64 bytes")]
    SignatureLength,
    /// The public key is not a valid point encoding.
    #[error("public key is not a valid curve point")]
    KeyEncoding,
    /// The signature does not verify under `verify_strict` (wrong, malleable, non-canonical,
    /// or made with a small-order key or R).
    #[error("signature does not verify")]
    Invalid,
}

/// The ledger's one verification path: length checks, point decoding, then
/// ed25519-dalek's `verify_strict`, which refuses non-canonical `S`, small-order `R` and
/// small-order (weak) public keys, so a signature cannot be mauled into a second valid one.
pub fn verify_signature(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureFault> {
    let key: &[u8; 32] = public_key
        .try_into()
        .map_err(|_| SignatureFault::KeyLength)?;
    let sig: &[u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureFault::SignatureLength)?;
    let key = VerifyingKey::from_bytes(key).map_err(|_| SignatureFault::KeyEncoding)?;
    key.verify_strict(message, &Signature::from_bytes(sig))
        .map_err(|_| SignatureFault::Invalid)
}

/// The salted commitment to an agent's private data, `SHA256(0x03 || salt || data)`.
pub fn commit_private_data(salt: &[u8; 32], data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([COMMITMENT_DOMAIN]);
    h.update(salt);
    h.update(data);
    h.finalize().into()
}

/// Whether `data` with `salt` opens `commitment`.
pub fn opens_commitment(commitment: &Hash, salt: &[u8; 32], data: &[u8]) -> bool {
    commit_private_data(salt, data) == *commitment
}

/// The canonical bytes of an `f64` slice (each value's bits, little-endian), e.g. an offer
/// curve's breakpoints, for [`commit_private_data`].
pub fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinct_per_role_and_index() {
        let a = KeyPair::derive(7, Role::Agent, 0);
        assert_eq!(
            a.public_key(),
            KeyPair::derive(7, Role::Agent, 0).public_key()
        );
        assert_ne!(
            a.public_key(),
            KeyPair::derive(7, Role::Validator, 0).public_key()
        );
        assert_ne!(
            a.public_key(),
            KeyPair::derive(7, Role::Agent, 1).public_key()
        );
        assert_ne!(
            a.public_key(),
            KeyPair::derive(8, Role::Agent, 0).public_key()
        );
        let sig = a.sign(b"msg");
        assert_eq!(verify_signature(&a.public_key(), b"msg", &sig), Ok(()));
        assert_eq!(
            verify_signature(&a.public_key(), b"msh", &sig),
            Err(SignatureFault::Invalid)
        );
        assert_eq!(
            verify_signature(&a.public_key(), b"msg", &sig[..63]),
            Err(SignatureFault::SignatureLength)
        );
        assert_eq!(
            verify_signature(&a.public_key()[..31], b"msg", &sig),
            Err(SignatureFault::KeyLength)
        );
    }

    #[test]
    fn commitments_bind_salt_and_data() {
        let salt = derive_secret(1, Role::Salt, 0);
        let data = f64_bytes(&[1.0, -2.5]);
        assert_eq!(data.len(), 16);
        let c = commit_private_data(&salt, &data);
        assert!(opens_commitment(&c, &salt, &data));
        assert!(!opens_commitment(
            &c,
            &derive_secret(1, Role::Salt, 1),
            &data
        ));
        assert!(!opens_commitment(&c, &salt, &f64_bytes(&[1.0, -2.25])));
    }
}
