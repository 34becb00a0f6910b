/*
 * A small vsnprintf: %d %i %u %x %X %p %s %c %%, with the l/ll/z length
 * modifiers, '0' and '-' flags, a field width and (for %s) a precision,
 * including '*'.
 */
#include "runtime.h"

struct out {
    char *buf;
    size_t size;
    size_t len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_padded(struct out *o, const char *s, size_t n, int width,
                       bool left, char pad)
{
    int fill = width > (int)n ? width - (int)n : 0;

    if (!left) {
        /* Zero padding goes after a sign. */
        if (pad == '0' && n > 0 && *s == '-') {
            put(o, *s++);
            n--;
        }
        while (fill--)
            put(o, pad);
        fill = 0;
    }
    while (n--)
        put(o, *s++);
    while (fill-- > 0)
        put(o, ' ');
}

static size_t format_number(char *tmp, unsigned long long v, unsigned base,
                            bool upper, bool negative)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char rev[24];
    size_t n = 0, len = 0;

    do {
        rev[n++] = digits[v % base];
        v /= base;
    } while (v);
    if (negative)
        tmp[len++] = '-';
    while (n)
        tmp[len++] = rev[--n];
    return len;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        bool left = false;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '-')
                left = true;
            else if (*fmt == '0')
                pad = '0';
            else
                break;
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        int precision = -1;
        if (*fmt == '.') {
            fmt++;
            precision = 0;
            if (*fmt == '*') {
                precision = va_arg(ap, int);
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9')
                    precision = precision * 10 + (*fmt++ - '0');
            }
        }
        int longness = 0;
        while (*fmt == 'l' || *fmt == 'z') {
            longness += *fmt == 'z' ? 2 : 1;
            fmt++;
        }

        char tmp[32];
        size_t n;
        unsigned long long u;
        long long s;
        switch (*fmt) {
        case 'd':
        case 'i':
            s = longness ? va_arg(ap, long) : va_arg(ap, int);
            n = format_number(tmp, s < 0 ? -(unsigned long long)s : (unsigned long long)s,
                              10, false, s < 0);
            put_padded(&o, tmp, n, width, left, pad);
            break;
        case 'u':
        case 'x':
        case 'X':
            u = longness ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
            n = format_number(tmp, u, *fmt == 'u' ? 10 : 16, *fmt == 'X', false);
            put_padded(&o, tmp, n, width, left, pad);
            break;
        case 'p':
            u = (unsigned long)va_arg(ap, void *);
            tmp[0] = '0';
            tmp[1] = 'x';
            n = 2 + format_number(tmp + 2, u, 16, false, false);
            put_padded(&o, tmp, n, width, left, pad);
            break;
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            n = precision >= 0 ? strnlen(str, (size_t)precision) : strlen(str);
            put_padded(&o, str, n, width, left, ' ');
            break;
        }
        case 'c':
            tmp[0] = (char)va_arg(ap, int);
            put_padded(&o, tmp, 1, width, left, ' ');
            break;
        case '%':
            put(&o, '%');
            break;
        case '\0':
            fmt--;
            break;
        default:
            put(&o, '%');
            put(&o, *fmt);
            break;
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

void vprintk(const char *fmt, va_list ap)
{
    char buf[1280];     /* room for a whole start_info.cmd_line */
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);

    if (n >= (int)sizeof(buf))
        n = sizeof(buf) - 1;
    console_write(buf, (size_t)n);
}

void printk(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintk(fmt, ap);
    va_end(ap);
}
