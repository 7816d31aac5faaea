using System.Globalization;
using System.Text;

namespace XenIo.Cli.Config;

/// <summary>Where a setting or value stands in a config file, for error messages (<c>file:line:column</c>).</summary>
public readonly record struct SourcePosition(string File, int Line, int Column)
{
    public override string ToString() => $"{File}:{Line}:{Column}";
}

/// <summary>A value of an xl.cfg setting: a string, a number or a list of those.</summary>
public abstract record XlValue(SourcePosition Position)
{
    public abstract string Describe();
}

public sealed record XlString(string Value, SourcePosition Position) : XlValue(Position)
{
    public override string Describe() => $"'{Value}'";
}

/// <summary>A bare number as written (xl keeps its text: <c>0x10</c> and <c>16</c> are both numbers).</summary>
public sealed record XlNumber(string Text, SourcePosition Position) : XlValue(Position)
{
    public override string Describe() => Text;

    public bool TryGetInt64(out long value) =>
        Text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? long.TryParse(Text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value)
            : long.TryParse(Text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
}

public sealed record XlList(IReadOnlyList<XlValue> Items, SourcePosition Position) : XlValue(Position)
{
    public override string Describe() => $"[{string.Join(", ", Items.Select(i => i.Describe()))}]";
}

/// <summary>One <c>key = value</c> (or <c>key += value</c>) line.</summary>
public sealed record XlSetting(string Key, XlValue Value, bool Append, SourcePosition Position);

/// <summary>A config file that cannot be read, with the place and what would be valid.</summary>
public sealed class XlConfigException(SourcePosition position, string message)
    : Exception($"{position}: {message}")
{
    public SourcePosition Position { get; } = position;
    public string Reason { get; } = message;
}

/// <summary>
/// The xl.cfg grammar (Xen's libxlu_cfg): <c>KEY = VALUE</c> settings ended by a newline or <c>;</c>;
/// values are numbers (decimal or 0x hex), single- or double-quoted strings with C escapes, or lists
/// <c>[ v, v, ]</c> that may span lines; <c>#</c> starts a comment; <c>+=</c> appends to a list.
/// Pure: text in, settings out.
/// </summary>
public sealed class XlConfigParser
{
    private readonly string _text;
    private readonly string _file;
    private int _pos;
    private int _line = 1;
    private int _lineStart;

    private XlConfigParser(string text, string file)
    {
        _text = text;
        _file = file;
    }

    public static IReadOnlyList<XlSetting> Parse(string text, string file = "<config>") =>
        new XlConfigParser(text, file).ParseAll();

    private SourcePosition Here => new(_file, _line, _pos - _lineStart + 1);

    private IReadOnlyList<XlSetting> ParseAll()
    {
        var settings = new List<XlSetting>();
        while (true)
        {
            SkipBlanksAndComments(newlines: true, semicolons: true);
            if (_pos >= _text.Length) return settings;
            var at = Here;
            var key = ReadIdentifier();
            SkipBlanksAndComments(newlines: false, semicolons: false);
            bool append = false;
            if (Peek() == '+' && PeekAt(1) == '=') { append = true; _pos += 2; }
            else if (Peek() == '=') _pos++;
            else throw Error($"expected '=' after '{key}', found {Found()}");
            SkipBlanksAndComments(newlines: false, semicolons: false);
            var value = ReadValue();
            SkipBlanksAndComments(newlines: false, semicolons: false);
            if (_pos < _text.Length && Peek() != '\n' && Peek() != ';')
                throw Error($"expected the end of the line after the value of '{key}', found {Found()}");
            settings.Add(new XlSetting(key, value, append, at));
        }
    }

    private string ReadIdentifier()
    {
        int start = _pos;
        if (_pos < _text.Length && (char.IsAsciiLetter(Peek()) || Peek() == '_'))
        {
            while (_pos < _text.Length && (char.IsAsciiLetterOrDigit(Peek()) || Peek() == '_')) _pos++;
            return _text[start.._pos];
        }
        throw Error($"expected a setting name (letters, digits, '_'), found {Found()}");
    }

    private XlValue ReadValue()
    {
        var at = Here;
        char c = Peek();
        if (c is '"' or '\'') return new XlString(ReadQuoted(c), at);
        if (char.IsAsciiDigit(c)) return new XlNumber(ReadNumber(), at);
        if (c == '[') return ReadList();
        throw Error($"expected a value (a number, a quoted string or a [list]), found {Found()}");
    }

    private XlList ReadList()
    {
        var at = Here;
        _pos++; // '['
        var items = new List<XlValue>();
        while (true)
        {
            SkipBlanksAndComments(newlines: true, semicolons: false);
            if (_pos >= _text.Length) throw new XlConfigException(at, "this list has no closing ']'");
            if (Peek() == ']') { _pos++; return new XlList(items, at); }
            var item = ReadValue();
            if (item is XlList) throw new XlConfigException(item.Position, "lists cannot be nested");
            items.Add(item);
            SkipBlanksAndComments(newlines: true, semicolons: false);
            if (_pos >= _text.Length) throw new XlConfigException(at, "this list has no closing ']'");
            if (Peek() == ',') { _pos++; continue; }
            if (Peek() == ']') continue;
            throw Error($"expected ',' or ']' in the list, found {Found()}");
        }
    }

    private string ReadNumber()
    {
        var at = Here;
        int start = _pos;
        if (Peek() == '0' && (PeekAt(1) is 'x' or 'X') && Uri.IsHexDigit(PeekAt(2)))
        {
            _pos += 2;
            while (_pos < _text.Length && Uri.IsHexDigit(Peek())) _pos++;
        }
        else
        {
            while (_pos < _text.Length && char.IsAsciiDigit(Peek())) _pos++;
        }
        if (_pos < _text.Length && (char.IsAsciiLetterOrDigit(Peek()) || Peek() == '.'))
            throw new XlConfigException(at, $"'{_text[start..(_pos + 1)]}…' is not a number: quote it if it is a string");
        return _text[start.._pos];
    }

    private string ReadQuoted(char quote)
    {
        var at = Here;
        _pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _text.Length || Peek() == '\n')
                throw new XlConfigException(at, $"string not closed: add the closing {quote} on the same line");
            var charAt = Here;
            char c = _text[_pos++];
            if (c == quote) return sb.ToString();
            if (c != '\\') { sb.Append(c); continue; }
            if (_pos >= _text.Length) throw new XlConfigException(at, "string ends with a lone backslash");
            char e = _text[_pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\\': case '\'': case '"': sb.Append(e); break;
                case 'x':
                {
                    int start = _pos;
                    while (_pos < _text.Length && _pos - start < 2 && Uri.IsHexDigit(Peek())) _pos++;
                    if (_pos == start) throw new XlConfigException(charAt, "\\x must be followed by hex digits");
                    sb.Append((char)int.Parse(_text.AsSpan(start, _pos - start), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture));
                    break;
                }
                case >= '0' and <= '7':
                {
                    int v = e - '0', n = 1;
                    while (n < 3 && _pos < _text.Length && Peek() is >= '0' and <= '7') { v = v * 8 + (_text[_pos++] - '0'); n++; }
                    sb.Append((char)v);
                    break;
                }
                default:
                    throw new XlConfigException(charAt, $"unknown escape '\\{e}' (valid: \\n \\t \\r \\\\ \\' \\\" \\xHH \\ooo)");
            }
        }
    }

    private void SkipBlanksAndComments(bool newlines, bool semicolons)
    {
        while (_pos < _text.Length)
        {
            char c = Peek();
            if (c == '#') { while (_pos < _text.Length && Peek() != '\n') _pos++; continue; }
            if (c == '\n')
            {
                if (!newlines) return;
                _pos++; _line++; _lineStart = _pos;
                continue;
            }
            if (c == ';' && semicolons) { _pos++; continue; }
            if (c is ' ' or '\t' or '\r') { _pos++; continue; }
            return;
        }
    }

    private char Peek() => _pos < _text.Length ? _text[_pos] : '\0';
    private char PeekAt(int ahead) => _pos + ahead < _text.Length ? _text[_pos + ahead] : '\0';

    private string Found() => _pos >= _text.Length ? "the end of the file"
        : _text[_pos] == '\n' ? "the end of the line"
        : $"'{_text[_pos]}'";

    private XlConfigException Error(string message) => new(Here, message);
}
