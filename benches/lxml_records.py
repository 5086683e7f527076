#!/usr/bin/python3
"""Peer baseline for benches/run.sh: what reading the bulk files costs a short Python program.

For each XML file given, lxml's iterparse reads the records (the elements named after the file's
kind: SubscriberChange, FlagChange, Fukuhon, AgeTransitionHandoff, AgeTransitionInquiry) and
collects each record's fields into a dict {field name: text}; nothing is validated or stored.
Prints the number of records read. Needs Debian's python3-lxml, run with /usr/bin/python3
(apt-get install -y python3-lxml).

    /usr/bin/python3 benches/lxml_records.py FILE.xml...
"""

import os
import sys

from lxml import etree

NS = "{urn:nhi-linkage:v1}"


def read(path):
    kind = os.path.basename(path).split("_", 1)[0]
    tag = NS + kind
    cut = len(NS)
    records = 0
    for _, el in etree.iterparse(path, events=("end",), tag=tag):
        fields = {child.tag[cut:]: child.text for child in el}
        if fields:
            records += 1
        # keep memory flat: drop the record and the siblings read before it
        el.clear()
        while el.getprevious() is not None:
            del el.getparent()[0]
    return records


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: lxml_records.py FILE.xml...")
    print(sum(read(p) for p in sys.argv[1:]))


if __name__ == "__main__":
    main()
