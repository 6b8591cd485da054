"""Gossip membership: who is in the cluster, and whether each peer is alive, suspect, dead or gone.

`state` is the pure view and its merge rules, `codec` the wire format, `gossiper` the loop that feeds
them. Nothing here knows about the ring: the ring subscribes to membership events.
"""
