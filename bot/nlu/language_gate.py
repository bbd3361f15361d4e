"""Which languages a message may be in, from the words and letters it uses.

The intent classifier has a class per intent and language (``track_order@de``,
:func:`bot.nlu.intent_classifier.class_label`). For an English message whose wording is
unusual, a German or French class can still win by a little ("it's too small" looked like
French small talk): the classes of a language only take part when the message has a sign
of that language: a letter English does not use (ä, ß, é, ç, ...) or one of the common
words and stems below. Nothing is trained; a message with no sign is scored by the English
classes only, exactly as before the languages were added.
"""
from __future__ import annotations

import re
from typing import FrozenSet

__all__ = ["possible_languages"]

_WORD = re.compile(r"[a-zäöüßàâçéèêëîïôûùüÿœæ]+", re.IGNORECASE)

_LETTERS = {"de": frozenset("äöüß"), "fr": frozenset("àâçéèêëîïôûùÿœæ")}

_WORDS = {
    "de": frozenset("""
        ich mich mir mein meine meinen meiner meinem sie ihnen ihr ihre ist sind
        nicht kein keine und oder aber bitte danke dank wo wann wie warum wer welche
        mit einem einer eines ein eine dem des das der zu zum zur von vom bei für
        fuer noch schon jetzt heute morgen gestern ja nein nee nö hallo moin servus tschüss
        tschuss tschüs tschau wiedersehen gerne gern genau richtig stimmt jawohl doch lieber
        möchte moechte mochte wollte hätte haette kann können koennen könnten soll
        sollen bekomme bekommen habe hab haben wurde wird werden kommt kommen bleibt
        gibt geht mal auch nur sehr vielen dank dankeschön schönen guten abend
        bestellung bestelung bstellung bestellnummer paket packet päckchen lieferung
        sendung sendungsnummer zustellung geld erstattung rückerstattung rueckerstattung
        rückzahlung gutschrift rücksendung retoure rückruf rueckruf ruckruf anruf anrufen
        zurückrufen zurueckrufen telefonieren mitarbeiter mensch menschen kollegen
        kundendienst kundenservice sachbearbeiter ansprechpartner berater verbinden
        weiterleiten uhr
    """.split()),
    "fr": frozenset("""
        je j moi mon ma mes vous votre vos tu te toi il elle est suis sont était pas ne
        non oui ouais ouai et ou où quand comment pourquoi quoi qui quel quelle avec une un
        des du de la le les au aux pour par chez encore déjà deja maintenant aujourd hui
        demain hier merci mrc bonjour bonsoir salut coucou bjr slt revoir bientôt bientot
        bonne journée soirée nuit volontiers exactement parfait entendu absolument bien sûr
        sur voudrais veux voulez peux pouvez puis peut aimerais souhaite souhaiterais
        préfère prefere avez avoir été reçu recu arrivé arrivée svp stp plaît
        plait commande comande colis coli paquet livraison livré livree expédiée suivi envoi
        argent remboursement remboursment rembourssement rembourser remboursé remboursée
        avoir retour renvoyé rappel rapel rappeler rappelez appeler appelez appelle
        téléphone conseiller humain personne quelqu opérateur
        clientèle transférer transférez statut état heure heures
    """.split()),
}


#: Beginnings of words that only these languages have ("Bestellstatus", "Telefontermin").
_STEMS = {
    "de": ("bestell", "erstatt", "rückerst", "rueckerst", "liefer", "sendung", "rückruf",
           "rueckruf", "telefon", "zurück", "zurueck", "mitarbeit", "kundend", "kundens",
           "einverstanden", "bis ", "tschü", "tschue", "wiederseh", "wiederhör", "danke",
           "gruezi", "grüß", "vereinbar", "falsch", "keinen", "passt", "nacht"),
    "fr": ("command", "rembours", "livr", "expédi", "rappel", "appel", "conseill", "accord",
           "merci", "revoir", "bonjour", "bonsoir", "adieu", "faux", "plus tard", "prochaine"),
}


def possible_languages(text: str) -> FrozenSet[str]:
    """The languages besides English that ``text`` shows a sign of (``{"de"}``, ...).

    Args:
        text: The customer's message.

    Returns:
        A subset of ``{"de", "fr"}``; empty for a message with no sign of either.
    """
    lowered = text.lower()
    found = {lang for lang, letters in _LETTERS.items() if letters & set(lowered)}
    words = set(_WORD.findall(lowered))
    found.update(lang for lang, vocabulary in _WORDS.items() if words & vocabulary)
    spaced = " ".join(words) + " "
    found.update(lang for lang, stems in _STEMS.items()
                 if any(f" {stem}" in f" {spaced}" for stem in stems))
    return frozenset(found)
