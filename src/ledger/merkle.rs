//! A domain-separated Merkle tree over transaction bytes that commits its leaf count.
//!
//! - leaf: `SHA256(0x00 || data)`;
//! - inner node: `SHA256(0x01 || left || right)`;
//! - a level with an odd number of nodes promotes its last node unchanged to the next
//!   level (it is never paired with a copy of itself);
//! - root: `SHA256(0x02 || leaf_count as u64 LE || top)`, where `top` is the single node
//!   left at the last level (32 zero bytes for an empty tree).
//!
//! Bitcoin's CVE-2012-2459 came from pairing an odd node with itself: the list `[a, b, c]`
//! and `[a, b, c, c]` had the same root, so a block with a duplicated trailing transaction
//! passed as the original. Here promotion and the leaf count make those roots differ, and
//! the domain bytes keep a leaf from passing as an inner node (second-preimage attacks).

use sha2::{Digest, Sha256};

use super::Hash;

/// Domain byte of a leaf hash.
pub const LEAF_DOMAIN: u8 = 0x00;
/// Domain byte of an inner node hash.
pub const NODE_DOMAIN: u8 = 0x01;
/// Domain byte of the root, which binds the leaf count to the tree's top.
pub const ROOT_DOMAIN: u8 = 0x02;

/// `SHA256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_DOMAIN]);
    h.update(data);
    h.finalize().into()
}

/// `SHA256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_DOMAIN]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The top of the tree over `leaves` (leaf hashes), odd nodes promoted; zeros when empty.
pub fn merkle_top(leaves: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = leaves.to_vec();
    if level.is_empty() {
        return [0; 32];
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node_hash(l, r),
                [odd] => *odd,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
    }
    level[0]
}

/// The root committed in a block header: `SHA256(0x02 || count u64 LE || top)` over the
/// given leaf hashes.
pub fn merkle_root_of_leaves(leaves: &[Hash]) -> Hash {
    let mut h = Sha256::new();
    h.update([ROOT_DOMAIN]);
    h.update((leaves.len() as u64).to_le_bytes());
    h.update(merkle_top(leaves));
    h.finalize().into()
}

/// The root over the items' bytes (each item is hashed as a leaf first).
pub fn merkle_root<T: AsRef<[u8]>>(items: &[T]) -> Hash {
    let leaves: Vec<Hash> = items.iter().map(|d| leaf_hash(d.as_ref())).collect();
    merkle_root_of_leaves(&leaves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    #[test]
    fn small_trees_match_hand_computation() {
        let (a, b, c) = (b"a".as_slice(), b"b".as_slice(), b"c".as_slice());
        let la = sha(&[&[0], a]);
        let lb = sha(&[&[0], b]);
        let lc = sha(&[&[0], c]);
        assert_eq!(leaf_hash(a), la);
        // SHA256(0x00 || "a"), a published constant, so the hashing itself is pinned.
        assert_eq!(
            hex::encode(la),
            "022a6979e6dab7aa5ae4c3e5e45f7e977112a7e63593820dbec1ec738a24f93c"
        );
        let root = |n: u64, top: &Hash| sha(&[&[2], &n.to_le_bytes(), top]);
        assert_eq!(merkle_root::<&[u8]>(&[]), root(0, &[0; 32]));
        assert_eq!(merkle_root(&[a]), root(1, &la));
        let ab = sha(&[&[1], &la, &lb]);
        assert_eq!(merkle_root(&[a, b]), root(2, &ab));
        // Three leaves: c is promoted, not paired with itself.
        assert_eq!(merkle_root(&[a, b, c]), root(3, &sha(&[&[1], &ab, &lc])));
        // Five leaves: e is promoted twice.
        let (d, e) = (b"d".as_slice(), b"e".as_slice());
        let cd = sha(&[&[1], &lc, &sha(&[&[0], d])]);
        let abcd = sha(&[&[1], &ab, &cd]);
        let le = sha(&[&[0], e]);
        assert_eq!(
            merkle_root(&[a, b, c, d, e]),
            root(5, &sha(&[&[1], &abcd, &le]))
        );
    }

    #[test]
    fn duplicating_trailing_transactions_changes_the_root() {
        // CVE-2012-2459: [a, b, c] and [a, b, c, c] shared a root in Bitcoin.
        let base: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 3]).collect();
        for n in 1..=base.len() {
            let items = &base[..n];
            let root = merkle_root(items);
            for dup in 1..=n {
                let mut longer = items.to_vec();
                longer.extend_from_slice(&items[n - dup..]);
                assert_ne!(root, merkle_root(&longer), "n = {n}, dup = {dup}");
            }
            // The top without the count differs too: promotion alone defeats the attack.
            let mut doubled = items.to_vec();
            doubled.push(items[n - 1].clone());
            let leaves = |v: &[Vec<u8>]| v.iter().map(|d| leaf_hash(d)).collect::<Vec<_>>();
            assert_ne!(merkle_top(&leaves(items)), merkle_top(&leaves(&doubled)));
        }
    }

    #[test]
    fn domain_separation_keeps_leaves_and_nodes_apart() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let node = node_hash(&a, &b);
        // A leaf whose data is the concatenation of two child hashes is not that node.
        let mut glued = a.to_vec();
        glued.extend_from_slice(&b);
        assert_ne!(leaf_hash(&glued), node);
        // A one-leaf tree over the 64 bytes differs from the two-leaf tree.
        assert_ne!(merkle_root(&[glued.as_slice()]), merkle_root(&[b"a", b"b"]));
        // Without the domain byte the hashes would be plain SHA-256.
        assert_ne!(leaf_hash(b"a"), sha(&[b"a"]));
        // Order matters.
        assert_ne!(merkle_root(&[b"a", b"b"]), merkle_root(&[b"b", b"a"]));
    }
}
